"""What every importer returns: one source image as the source describes it, and the helpers they share.

Its own module so the importers (this package's yolo/voc, coco, folders) and the dispatch in
`importers` can all use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from defectops.dataset import IMAGE_SUFFIXES, DatasetError

PixelBox = tuple[int, float, float, float, float]  # class id, x1, y1, x2, y2
# What datasets call their splits, folded to the canonical three.
SPLIT_ALIASES = {"train": "train", "training": "train", "trainval": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


class Item(NamedTuple):
    """One source image as the source describes it."""

    path: Path
    boxes: list[PixelBox]
    split: str | None = None  # the source's own split (train/val/test), None when it has none
    mask: Path | None = None  # a pixel mask, nonzero = defect
    mask_class: int | None = None  # the class of every nonzero pixel of `mask` (one defect type per image)


def split_name(name: str) -> str | None:
    """'valid' -> 'val', 'Training' -> 'train'; None when the name is no split."""
    return SPLIT_ALIASES.get(name.lower())


def find_image(base: Path, file_name: str, annotation: Path, index: dict) -> Path:
    """An annotation's image: relative to the annotation's folder, in images/, or by name below it.

    `index` is the caller's per-import cache of the tree below `base` (built on first need)."""
    for candidate in (base / file_name, base / "images" / file_name):
        if candidate.is_file():
            return candidate
    if not index:
        for path in base.rglob("*"):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(path.name, []).append(path)
    matches = index.get(Path(file_name).name, [])
    if len(matches) != 1:
        where = "found several times" if matches else "not found"
        raise DatasetError(f"{annotation}: image '{file_name}' {where} (looked beside it, in images/ and below {base})")
    return matches[0]

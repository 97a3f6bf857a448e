"""Image-level layouts: classification folders and MVTec-AD.

Classification folders (`<root>/<class>/...images`, optionally `<root>/<split>/<class>/...`): a
folder whose name matches `good_names` (good, ok, free, MT_Free, ...) is defect-free; any other
folder is a defect class. An image with a same-named .png beside it (the magnetic tile set's
`<class>/Imgs/<name>.jpg + <name>.png`) has a pixel mask: each connected region becomes a box and
the mask is kept (an empty mask in a defect folder, as a few whole-surface 'uneven' tiles have,
gives a whole-image box, with a warning). Without a mask, a defect image gets one whole-image box,
so the dataset trains a classifier (`train.task: classify`) and still scores with the same recall-first evaluation.

MVTec-AD (`train/good`, `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`): each
connected region of a defect mask becomes a box of that defect type; train/ and test/ are the
source's splits.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from defectops.components.ingest.items import Item, PixelBox, split_name
from defectops.dataset import IMAGE_SUFFIXES, DatasetError

log = logging.getLogger(__name__)

# Folder names (case-insensitive globs) that mean defect-free.
DEFAULT_GOOD_NAMES = ["good", "ok", "free", "normal", "no_defect", "nodefect", "defect_free", "defect-free",
                      "*_free", "*-free", "*_good", "*_ok", "*_normal"]


def is_good(name: str, good_names: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for pattern in good_names)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _images_and_masks(folder: Path) -> list[tuple[Path, Path | None]]:
    """Every image below `folder` with its mask: a .png of the same name beside an image of
    another format is that image's mask, not an image."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    by_stem: dict[Path, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.with_suffix(""), []).append(p)
    pairs = []
    for group in by_stem.values():
        masks = [p for p in group if p.suffix.lower() == ".png"]
        images = [p for p in group if p.suffix.lower() != ".png"]
        if len(images) == 1 and len(masks) == 1:
            pairs.append((images[0], masks[0]))
        else:
            pairs += [(p, None) for p in group]
    return sorted(pairs)


def _size(image: Path) -> tuple[int, int]:
    try:
        with Image.open(image) as im:
            return im.size
    except Exception as exc:  # noqa: BLE001 - named in the error
        raise DatasetError(f"{image}: cannot read the image to label it ({type(exc).__name__}: {exc})") from None


def import_folders(src: Path, good_names: list[str] = DEFAULT_GOOD_NAMES) -> tuple[list[str], list[Item]]:
    src = Path(src)
    subdirs = sorted(p for p in src.iterdir() if p.is_dir()) if src.is_dir() else []
    if subdirs and all(split_name(d.name) for d in subdirs):  # <split>/<class>/...
        roots = [(d, split_name(d.name)) for d in subdirs]
    else:
        roots = [(src, None)]
    found = [(d, split, _images_and_masks(d)) for root, split in roots for d in sorted(root.iterdir()) if d.is_dir()]
    class_dirs = [(d, split, pairs) for d, split, pairs in found if pairs]  # each folder is walked once
    if not class_dirs:
        raise DatasetError(f"{src}: expected one sub-folder of images per class (<root>/<class>/*.png, "
                           f"defect-free folders named like {good_names[:5]})")
    names = sorted({d.name for d, _, _ in class_dirs if not is_good(d.name, good_names)})
    if not names:
        raise DatasetError(f"{src}: only defect-free folders ({sorted({d.name for d, _, _ in class_dirs})}); "
                           "at least one defect class folder is needed")
    items, unmasked = [], []
    for folder, split, pairs in class_dirs:
        good = is_good(folder.name, good_names)
        class_id = None if good else names.index(folder.name)
        for image, mask in pairs:
            boxes = boxes_from_mask(mask, class_id) if mask is not None and not good else []
            if good:
                items.append(Item(image, [], split))
            elif boxes:
                items.append(Item(image, boxes, split, mask, class_id))
            else:  # no mask, or an empty one (a whole-surface defect): the folder is the label
                if mask is not None:
                    unmasked.append(mask)
                w, h = _size(image)
                items.append(Item(image, [(class_id, 0.0, 0.0, float(w), float(h))], split))
    if unmasked:
        log.warning("ingest: %d defect image(s) have an empty mask and get one whole-image box of their folder's "
                    "class: %s", len(unmasked), [str(p) for p in unmasked[:5]])
    return names, items


def boxes_from_mask(mask_path: Path, class_id: int, min_pixels: int = 4) -> list[PixelBox]:
    """One box per connected defect region (8-connectivity); specks under `min_pixels` are noise."""
    import cv2

    try:
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L")) > 0
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{mask_path}: cannot read the mask ({type(exc).__name__}: {exc})") from None
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, w, h, area in stats[1:count]:  # label 0 is the background
        if area >= min_pixels:
            boxes.append((class_id, float(x), float(y), float(x + w), float(y + h)))
    return boxes


def import_mvtec(src: Path, good_names: list[str] = DEFAULT_GOOD_NAMES) -> tuple[list[str], list[Item]]:
    src = Path(src)
    for needed in ("train/good", "test"):
        if not (src / needed).is_dir():
            raise DatasetError(f"{src}: not an MVTec-AD category folder, '{needed}/' is missing "
                               "(expected train/good, test/<defect>, ground_truth/<defect>/*_mask.png)")
    defect_dirs = sorted(p for p in (src / "test").iterdir() if p.is_dir() and not is_good(p.name, good_names))
    names = [d.name for d in defect_dirs]
    if not names:
        raise DatasetError(f"{src / 'test'}: no defect folders (test/<defect>/)")
    items: list[Item] = [Item(image, [], "train") for image in _images(src / "train" / "good")]
    for folder in sorted(p for p in (src / "test").iterdir() if p.is_dir() and is_good(p.name, good_names)):
        items += [Item(image, [], "test") for image in _images(folder)]
    for class_id, folder in enumerate(defect_dirs):
        for image in _images(folder):
            mask = src / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if not mask.exists():
                raise DatasetError(f"{image}: its mask {mask} is missing (MVTec-AD: ground_truth/<defect>/"
                                   "<stem>_mask.png)")
            boxes = boxes_from_mask(mask, class_id)
            if not boxes:
                raise DatasetError(f"{mask}: the mask is empty, but {image} is filed under defect '{folder.name}'")
            items.append(Item(image, boxes, "test", mask, class_id))
    return names, items

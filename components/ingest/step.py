"""Ingest: produce the canonical dataset (synthetic by default, or imported from a real format)."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field, model_validator
from rich.console import Console
from rich.progress import track

from defectops.components.ingest import importers, synthetic
from defectops.components.ingest.extra import merge_extra_sources
from defectops.components.ingest.folders import DEFAULT_GOOD_NAMES
from defectops.components.ingest.items import Item
from defectops.components.ingest.splits import (
    NEAR_DUPLICATES,
    NO_GROUPS,
    SplitFractions,
    assign_splits,
    image_groups,
    plan_splits,
    split_warnings,
)
from defectops.config import StepConfig
from defectops.dataset import (
    SPLITS,
    Box,
    DatasetError,
    image_dir,
    label_path,
    mask_path,
    write_dataset_yaml,
    write_labels,
    write_manifest,
)
from defectops.metrics import StepTimer, write_metrics

log = logging.getLogger(__name__)
__all__ = ["IngestConfig", "SplitFractions", "assign_splits", "ingest"]


class IngestConfig(StepConfig):
    source: Literal["synthetic", "auto", "yolo", "voc", "coco", "folders", "mvtec"] = Field(
        "synthetic", description="synthetic (generated), auto (detect the layout of 'path') or a format name.")
    path: Path | None = Field(None, description="Folder (or COCO .json) to import.")
    seed: int = 7
    n_images: int = Field(400, ge=6, description="Synthetic only.")
    image_size: int = Field(256, ge=32, le=4096, description="Synthetic only.")
    defect_free_fraction: float = Field(0.35, ge=0, lt=1, description="Synthetic only.")
    split: SplitFractions = SplitFractions()
    split_mode: Literal["keep", "resplit"] = Field(
        "keep", description="keep: the source's own train/val/test (a missing val or test is carved out of train); "
                            "resplit: ignore it. A source without splits is always split with 'split'.")
    group_by: str = Field(NEAR_DUPLICATES, description="What keeps images of one part/board/coil in one split when "
                          "splitting: 'near_duplicates' (perceptual-hash clusters), a regex whose first group, "
                          "searched in the source path, names the group, or 'none' (every image alone).")
    good_names: list[str] = Field(DEFAULT_GOOD_NAMES, description="Folder names (case-insensitive globs) that "
                                  "mean defect-free, for class-folder and MVTec layouts.")
    extra_sources: list[Path] = Field([], description="Canonical datasets merged into the train split (e.g. "
                                      "'defectops feedback export' output: inspector-answered line images); their "
                                      "class names must be the base dataset's.")

    @model_validator(mode="after")
    def _path_for_imports(self):
        if self.source != "synthetic" and self.path is None:
            raise ValueError(f"source '{self.source}' needs 'path' (the folder to import)")
        return self

    @model_validator(mode="after")
    def _group_by_compiles(self):
        if self.group_by not in (NEAR_DUPLICATES, NO_GROUPS):
            try:
                re.compile(self.group_by)
            except re.error as exc:
                raise ValueError(f"group_by {self.group_by!r} is not a valid regex ({exc}); use "
                                 f"'{NEAR_DUPLICATES}' or a pattern such as '(board\\d+)_'") from None
        return self


def _generate_synthetic(config: IngestConfig, out: Path) -> list[str]:
    n_free = round(config.n_images * config.defect_free_fraction)
    free = set(np.random.default_rng(config.seed).choice(config.n_images, n_free, replace=False).tolist())
    keys = [f"synth_{i:05d}" for i in range(config.n_images)]
    splits = assign_splits(keys, ["good" if i in free else "defect" for i in range(config.n_images)], config.split)
    for i, (key, split) in track(list(enumerate(zip(keys, splits))), description="drawing synthetic images",
                                 console=Console(stderr=True), transient=True):
        img, boxes = synthetic.make_image(config.seed, i, config.image_size, i in free)
        rel = f"images/{split}/{key}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / rel)
        size = config.image_size
        write_labels(label_path(out, rel), [Box.from_pixels(c, *xyxy, size, size) for c, *xyxy in boxes])
    return synthetic.CLASSES


def _target_names(sources: list[Path]) -> list[str]:
    """File names in the canonical set: the source's own when unique, else its path below the common
    root (MVTec repeats 000.png in every folder), so re-importing the same tree gives the same names."""
    if len({p.name for p in sources}) == len(sources):
        return [p.name for p in sources]
    root = Path(os.path.commonpath([str(p.parent) for p in sources]))
    return ["__".join(p.relative_to(root).parts) for p in sources]


def _write_mask(item: Item, target: Path, size: tuple[int, int]) -> None:
    """The canonical mask: 0 = background, class + 1 on the defect's pixels."""
    with Image.open(item.mask) as im:
        if im.size != size:
            raise DatasetError(f"{item.mask}: mask is {im.size[0]}x{im.size[1]} but its image {item.path} is "
                               f"{size[0]}x{size[1]}")
        defect = np.asarray(im.convert("L")) > 0
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((defect * (item.mask_class + 1)).astype(np.uint8)).save(target)


def _write_imported(names: list[str], items: list[Item], config: IngestConfig,
                    out: Path) -> tuple[dict[str, str], str]:
    """Copy images, labels and masks into their splits; (group per canonical path, how splits were made)."""
    if not items:
        raise DatasetError(f"{config.path}: no images to import")
    targets = _target_names([item.path for item in items])
    keys = [Path(t).stem for t in targets]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise DatasetError(f"{config.path}: image names must be unique across the source, repeated: {dupes}")
    # Stratify by first class (or 'good') so each split sees every class.
    strata = [names[min(b[0] for b in item.boxes)] if item.boxes else "good" for item in items]
    groups = image_groups(config, items, keys)
    splits, how = plan_splits(config, items, keys, strata, groups)
    group_of = {}
    for item, split, target, group in zip(items, splits, targets, groups):
        rel = f"images/{split}/{target}"
        group_of[rel] = group
        image_dir(out, split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, out / rel)
        try:
            with Image.open(item.path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - copied as is: validate names and quarantines undecodable files
            write_labels(label_path(out, rel), [])
            continue
        write_labels(label_path(out, rel),
                     [Box.from_pixels(c, x1, y1, x2, y2, w, h) for c, x1, y1, x2, y2 in item.boxes])
        if item.mask is not None:
            _write_mask(item, mask_path(out, rel), (w, h))
    return group_of, how


def ingest(config: IngestConfig, out: Path) -> dict:
    """Write the canonical dataset to `out` (replaced) and return its summary metrics."""
    timer = StepTimer()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fmt = config.source
    groups, how = None, "generated"
    if config.source == "synthetic":
        names = _generate_synthetic(config, out)
    else:
        fmt, names, items = importers.import_any(config.source, config.path, config.good_names)
        groups, how = _write_imported(names, items, config, out)
    provenance = {}
    if config.extra_sources:
        extra_groups, provenance = merge_extra_sources(config.extra_sources, names, out)
        groups = {**(groups or {}), **extra_groups}
    write_dataset_yaml(out, names)
    rows = write_manifest(out, groups)
    warnings = split_warnings(rows, names)
    for warning in warnings:
        log.warning("ingest: %s", warning)
    per_split_groups = {s: len({r["group"] or r["path"] for r in rows if r["split"] == s}) for s in SPLITS}
    metrics = {
        "images": len(rows),
        "boxes": sum(int(r["n_boxes"]) for r in rows),
        "defect_free": sum(1 for r in rows if int(r["n_boxes"]) == 0),
        "per_split": {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "val", "test")},
        "per_class_images": {n: sum(1 for r in rows if n in r["classes"].split(";")) for n in names},
        "per_split_class_images": {s: {n: sum(1 for r in rows if r["split"] == s and n in r["classes"].split(";"))
                                       for n in names} for s in SPLITS},
        "groups_per_split": per_split_groups,
        "splits": how,
        "masks": sum(1 for r in rows if mask_path(out, r["path"]).exists()),
        "warnings": warnings,
        "classes": names,
        "format": fmt,
        **provenance,
        "seconds": timer.seconds(),
    }
    write_metrics(out / "ingest_metrics.json", metrics)
    return metrics

"""Ingest: produce the canonical dataset (synthetic by default, or imported from a real format)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field, model_validator
from rich.console import Console
from rich.progress import track

from defectops.components.ingest import importers, synthetic
from defectops.config import StepConfig
from defectops.dataset import Box, DatasetError, image_dir, label_path, write_dataset_yaml, write_labels, write_manifest
from defectops.metrics import StepTimer, write_metrics


class SplitFractions(StepConfig):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:.3f}")
        return self


class IngestConfig(StepConfig):
    source: Literal["synthetic", "auto", "yolo", "voc", "coco", "folders", "mvtec"] = Field(
        "synthetic", description="synthetic (generated), auto (detect the layout of 'path') or a format name.")
    path: Path | None = Field(None, description="Folder (or COCO .json) to import.")
    seed: int = 7
    n_images: int = Field(400, ge=6, description="Synthetic only.")
    image_size: int = Field(256, ge=32, le=4096, description="Synthetic only.")
    defect_free_fraction: float = Field(0.35, ge=0, lt=1, description="Synthetic only.")
    split: SplitFractions = SplitFractions()

    @model_validator(mode="after")
    def _path_for_imports(self):
        if self.source != "synthetic" and self.path is None:
            raise ValueError(f"source '{self.source}' needs 'path' (the folder to import)")
        return self


def assign_splits(keys: list[str], strata: list[str], fractions: SplitFractions) -> list[str]:
    """Deterministic, stratified split: ranks items by a hash of their key within each stratum.

    Hash order (not a shuffled RNG) keeps an item's split stable when others are added.
    """
    result = [""] * len(keys)
    for stratum in sorted(set(strata)):
        members = [i for i, s in enumerate(strata) if s == stratum]
        members.sort(key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
        n = len(members)
        n_val = max(1, round(n * fractions.val)) if n >= 3 else 0
        n_test = max(1, round(n * fractions.test)) if n >= 3 else 0
        for rank, i in enumerate(members):
            result[i] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return result


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


def _write_imported(names: list[str], items, config: IngestConfig, out: Path) -> list[str]:
    if not items:
        raise DatasetError(f"{config.path}: no images to import")
    targets = _target_names([p for p, _ in items])
    keys = [Path(t).stem for t in targets]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise DatasetError(f"{config.path}: image names must be unique across the source, repeated: {dupes}")
    # Stratify by first class (or 'good') so each split sees every class.
    strata = [names[min(b[0] for b in boxes)] if boxes else "good" for _, boxes in items]
    splits = assign_splits(keys, strata, config.split)
    for (src, boxes), split, target in zip(items, splits, targets):
        rel = f"images/{split}/{target}"
        image_dir(out, split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
        try:
            with Image.open(src) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - copied as is: validate names and quarantines undecodable files
            write_labels(label_path(out, rel), [])
            continue
        write_labels(label_path(out, rel), [Box.from_pixels(c, x1, y1, x2, y2, w, h) for c, x1, y1, x2, y2 in boxes])
    return names


def ingest(config: IngestConfig, out: Path) -> dict:
    """Write the canonical dataset to `out` (replaced) and return its summary metrics."""
    timer = StepTimer()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fmt = config.source
    if config.source == "synthetic":
        names = _generate_synthetic(config, out)
    else:
        fmt, names, items = importers.import_any(config.source, config.path)
        names = _write_imported(names, items, config, out)
    write_dataset_yaml(out, names)
    rows = write_manifest(out)
    metrics = {
        "images": len(rows),
        "boxes": sum(int(r["n_boxes"]) for r in rows),
        "defect_free": sum(1 for r in rows if int(r["n_boxes"]) == 0),
        "per_split": {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "val", "test")},
        "per_class_images": {n: sum(1 for r in rows if n in r["classes"].split(";")) for n in names},
        "classes": names,
        "format": fmt,
        "seconds": timer.seconds(),
    }
    write_metrics(out / "ingest_metrics.json", metrics)
    return metrics

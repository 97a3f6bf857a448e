"""Ingest: produce the canonical dataset (synthetic by default, or imported from a real format)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field, model_validator
from rich.console import Console
from rich.progress import track

from defectops.components.ingest import importers, synthetic
from defectops.components.ingest.folders import DEFAULT_GOOD_NAMES
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
from defectops.near_duplicates import MAX_DISTANCE, clusters, hash_files

log = logging.getLogger(__name__)
NEAR_DUPLICATES = "near_duplicates"
NO_GROUPS = "none"


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
    split_mode: Literal["keep", "resplit"] = Field(
        "keep", description="keep: the source's own train/val/test (a missing val or test is carved out of train); "
                            "resplit: ignore it. A source without splits is always split with 'split'.")
    group_by: str = Field(NEAR_DUPLICATES, description="What keeps images of one part/board/coil in one split when "
                          "splitting: 'near_duplicates' (perceptual-hash clusters), a regex whose first group, "
                          "searched in the source path, names the group, or 'none' (every image alone).")
    good_names: list[str] = Field(DEFAULT_GOOD_NAMES, description="Folder names (case-insensitive globs) that "
                                  "mean defect-free, for class-folder and MVTec layouts.")

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


def assign_splits(keys: list[str], strata: list[str], fractions: SplitFractions,
                  groups: list[str] | None = None) -> list[str]:
    """Deterministic, stratified, group-aware split: groups (an image alone when `groups` is None)
    are ranked by a hash of their name within each stratum and filled into val, then test, then train.

    Hash order (not a shuffled RNG) keeps an item's split stable when others are added. A group
    never straddles splits; its stratum is its rarest member's, so rare classes spread over splits.
    """
    groups = groups if groups is not None else keys
    size = Counter(strata)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    group_stratum = {g: min((strata[i] for i in idx), key=lambda s: (size[s], s)) for g, idx in members.items()}
    result = [""] * len(keys)
    for stratum in sorted(set(group_stratum.values())):
        ranked = sorted((g for g, s in group_stratum.items() if s == stratum),
                        key=lambda g: hashlib.sha256(g.encode()).hexdigest())
        n = sum(len(members[g]) for g in ranked)
        n_val = max(1, round(n * fractions.val)) if n >= 3 and fractions.val else 0
        n_test = max(1, round(n * fractions.test)) if n >= 3 and fractions.test else 0
        placed = 0
        for g in ranked:
            split = "val" if placed < n_val else "test" if placed < n_val + n_test else "train"
            for i in members[g]:
                result[i] = split
            placed += len(members[g])
    return result


def image_groups(config: IngestConfig, items: list[importers.Item], keys: list[str]) -> list[str]:
    """The group of every item: a regex's first group on its source path, or its near-duplicate
    cluster (named after its first member's key)."""
    if config.group_by == NO_GROUPS:
        return list(keys)
    if config.group_by != NEAR_DUPLICATES:
        pattern = re.compile(config.group_by)
        found = []
        for item in items:
            rel = _source_rel(config, item.path)
            match = pattern.search(rel)
            if match is None:
                raise DatasetError(f"{item.path}: group_by {config.group_by!r} does not match '{rel}'; every image "
                                   "needs a group (or use group_by: near_duplicates)")
            found.append(match.group(1) if pattern.groups else match.group(0))
        return found
    hashes = hash_files([item.path for item in items])  # undecodable: alone here, named by validate
    return [keys[root] for root in clusters(hashes, MAX_DISTANCE)]


def _source_rel(config: IngestConfig, path: Path) -> str:
    root = Path(config.path).resolve()
    root = root.parent if root.is_file() else root
    path = Path(path).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def plan_splits(config: IngestConfig, items: list[importers.Item], keys: list[str], strata: list[str],
                groups: list[str]) -> tuple[list[str], str]:
    """(split per item, how it was decided). `keep` keeps the source's splits; a missing val or test
    is carved out of the source's train, group-aware; images the source left unassigned are split
    like a fresh dataset. Without source splits (or with `resplit`), everything is split."""
    given = [item.split for item in items]
    present = {s for s in given if s}
    if config.split_mode == "resplit" or not present or present == {"train"}:
        return assign_splits(keys, strata, config.split, groups), "resplit"
    splits = list(given)
    how = "kept"
    fresh = [i for i, s in enumerate(given) if not s]
    if fresh:
        sub = assign_splits([keys[i] for i in fresh], [strata[i] for i in fresh], config.split,
                            [groups[i] for i in fresh])
        for i, s in zip(fresh, sub):
            splits[i] = s
        how += f"; {len(fresh)} unassigned image(s) split"
    missing = [s for s in ("val", "test") if s not in present]
    if missing:
        pool = [i for i, s in enumerate(splits) if s == "train"]
        share = {s: getattr(config.split, s) for s in missing}
        whole = config.split.train + sum(share.values())
        carve = SplitFractions.model_construct(train=config.split.train / whole, val=share.get("val", 0) / whole,
                                               test=share.get("test", 0) / whole)
        sub = assign_splits([keys[i] for i in pool], [strata[i] for i in pool], carve, [groups[i] for i in pool])
        for i, s in zip(pool, sub):
            splits[i] = s
        how += f"; {' and '.join(missing)} carved out of train"
    return splits, how
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


def _write_mask(item: importers.Item, target: Path, size: tuple[int, int]) -> None:
    """The canonical mask: 0 = background, class + 1 on the defect's pixels."""
    with Image.open(item.mask) as im:
        if im.size != size:
            raise DatasetError(f"{item.mask}: mask is {im.size[0]}x{im.size[1]} but its image {item.path} is "
                               f"{size[0]}x{size[1]}")
        defect = np.asarray(im.convert("L")) > 0
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((defect * (item.mask_class + 1)).astype(np.uint8)).save(target)


def _write_imported(names: list[str], items: list[importers.Item], config: IngestConfig,
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


def split_warnings(rows: list[dict], names: list[str]) -> list[str]:
    """A split without a class cannot train (train) or measure (val, test) it: said, not fatal."""
    found = []
    for split in SPLITS:
        present = {c for r in rows if r["split"] == split for c in r["classes"].split(";") if c}
        missing = [n for n in names if n not in present]
        if missing and any(r["split"] == split for r in rows):
            found.append(f"split '{split}' has no image of {missing}")
        elif not any(r["split"] == split for r in rows):
            found.append(f"split '{split}' is empty")
    return found


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
        "seconds": timer.seconds(),
    }
    write_metrics(out / "ingest_metrics.json", metrics)
    return metrics

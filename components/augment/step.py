"""Augment: rebalance rare defect classes in the training split, with box-consistent variants of
their images and with their real defects pasted onto defect-free images (synthetic injection).

Validation and test splits are copied untouched: evaluation must see the data as it comes. Pixel masks
(a segmentation dataset) travel with every image: copied, flipped with their variant, pasted with their crop.
Everything is seeded; what was generated from what is written to augment_log.csv.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import Field

from defectops.components.augment.inject import crops_of, inject, load_rgb
from defectops.components.augment.transforms import random_variant
from defectops.config import StepConfig
from defectops.dataset import (
    copy_provenance,
    image_dir,
    label_path,
    mask_path,
    read_labels,
    read_manifest,
    read_names,
    write_dataset_yaml,
    write_labels,
    write_manifest,
)
from defectops.lineage import dvc_dir_md5
from defectops.metrics import StepTimer, write_metrics

logger = logging.getLogger("defectops.augment")


class AugmentConfig(StepConfig):
    seed: int = 0
    balance: bool = Field(True, description="Oversample images of rare classes up to the most frequent class.")
    balance_ratio: float = Field(1.0, gt=0, le=1, description="Target count per class as a share of the largest.")
    max_new_per_class: int = Field(500, ge=0, description="Cap on generated images per class.")
    photometric_strength: float = Field(0.15, ge=0, le=0.5)
    inject: bool = Field(True, description="Make some of each rare class's new images by pasting its real defect "
                                           "crops onto defect-free training images.")
    inject_share: float = Field(0.5, ge=0, le=1, description="Share of each class's new images made by injection "
                                                             "(the rest are flipped / relit variants).")
    inject_scale_jitter: float = Field(0.25, ge=0, le=1, description="Pasted defects are resized by up to this "
                                                                     "factor (1 + jitter) either way.")
    inject_max_per_image: int = Field(3, ge=1, le=10, description="Each injected image gets 1..this many of the "
                                                                 "class's defects (never overlapping).")


def plan_balancing(class_images: dict[str, list[str]], ratio: float, cap: int) -> dict[str, int]:
    """How many extra images each class needs to reach `ratio` x the largest class."""
    largest = max((len(v) for v in class_images.values()), default=0)
    target = int(round(largest * ratio))
    return {c: min(cap, max(0, target - len(v))) for c, v in class_images.items() if v}


def augment(config: AugmentConfig, dataset: Path, out: Path) -> dict:
    timer = StepTimer()
    dataset, out = Path(dataset), Path(out)
    names = read_names(dataset)
    rows = read_manifest(dataset)
    if out.exists():
        shutil.rmtree(out)
    for row in rows:  # originals of every split, unchanged (with their pixel masks)
        for src, dst in ((dataset / row["path"], out / row["path"]),
                         (label_path(dataset, row["path"]), label_path(out, row["path"])),
                         (mask_path(dataset, row["path"]), mask_path(out, row["path"]))):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                shutil.copyfile(src, dst)
    write_dataset_yaml(out, names)
    copy_provenance(dataset, out)

    train = [r for r in rows if r["split"] == "train"]
    class_images = {n: [r["path"] for r in train if n in r["classes"].split(";")] for n in names}
    plan = plan_balancing(class_images, config.balance_ratio, config.max_new_per_class) if config.balance else {}
    rng = np.random.default_rng(config.seed)
    generated: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    pasted: Counter[str] = Counter()  # defects pasted: an injected image carries one or more
    transforms_used: Counter[str] = Counter()
    image_dir(out, "train").mkdir(parents=True, exist_ok=True)
    backgrounds = [r["path"] for r in train if int(r["n_boxes"]) == 0]
    if config.inject and config.inject_share > 0 and any(plan.values()) and not backgrounds:
        logger.warning("no defect-free training images to paste defects onto: rare classes get variants only")
    loaded: dict[str, np.ndarray] = {}

    def load(rel: str) -> np.ndarray:
        if rel not in loaded:
            loaded[rel] = load_rgb(dataset / rel)
        return loaded[rel]

    def load_mask(rel: str) -> np.ndarray | None:
        """The canonical mask, so generated images of a segmentation dataset keep exact outlines."""
        path = mask_path(dataset, rel)
        return np.asarray(Image.open(path)) if path.exists() else None

    def save(rel: str, img: np.ndarray, boxes: list, mask: np.ndarray | None) -> None:
        Image.fromarray(img).save(out / rel)
        write_labels(label_path(out, rel), boxes)
        if mask is not None:
            mask_path(out, rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(mask_path(out, rel))

    log = []
    for cls_name, n_new in sorted(plan.items()):
        sources = class_images[cls_name]
        class_id = names.index(cls_name)
        crops = [c for rel in sources for c in crops_of(load(rel), read_labels(label_path(dataset, rel)), class_id,
                                                        rel, load_mask(rel))] if config.inject and backgrounds else []
        n_inject = round(n_new * config.inject_share) if crops else 0
        for k, (background, img, boxes, crop_sources, mask) in enumerate(
                inject(backgrounds, load, crops, class_id, n_inject, rng, config.inject_scale_jitter,
                       config.inject_max_per_image)):
            new_rel = f"images/train/inj_{cls_name}_{k:04d}_{Path(background).stem}.png"
            save(new_rel, img, boxes, mask)
            log.append({"image": new_rel, "kind": "injection", "class": cls_name, "from": ";".join(crop_sources),
                        "onto": background})
            injected[cls_name] += 1
            pasted[cls_name] += len(crop_sources)
        for k in range(n_new - n_inject):
            rel = sources[int(rng.integers(len(sources)))]
            img, boxes, applied, mask = random_variant(load(rel), read_labels(label_path(dataset, rel)), rng,
                                                       config.photometric_strength, load_mask(rel))
            new_rel = f"images/train/aug_{cls_name}_{k:04d}_{Path(rel).stem}.png"
            save(new_rel, img, boxes, mask)
            log.append({"image": new_rel, "kind": "+".join(applied) or "copy", "class": cls_name, "from": rel,
                        "onto": ""})
            transforms_used.update(applied)
        generated[cls_name] += n_new
        loaded = {k: v for k, v in loaded.items() if k in backgrounds}  # keep backgrounds, drop class sources
    with open(out / "augment_log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "kind", "class", "from", "onto"])
        writer.writeheader()
        writer.writerows(log)
    manifest = write_manifest(out)
    after = {n: sum(1 for r in manifest if r["split"] == "train" and n in r["classes"].split(";")) for n in names}
    metrics = {
        "source_dataset_md5": dvc_dir_md5(dataset),
        "config": config.model_dump(),
        "train_images_before": len(train),
        "train_images_after": sum(1 for r in manifest if r["split"] == "train"),
        "class_images_before": {n: len(v) for n, v in class_images.items()},
        "class_images_after": after,
        "generated_per_class": dict(generated),
        "injected_per_class": dict(injected),
        "pasted_defects_per_class": dict(pasted),
        "defect_free_backgrounds": len(backgrounds),
        "transforms_applied": dict(transforms_used),
        "seconds": timer.seconds(),
    }
    write_metrics(out / "augment_metrics.json", metrics)
    return metrics

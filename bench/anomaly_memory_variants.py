"""What the anomaly memory does with the features it is given, on the magnetic tiles, every seed: the project's own
fit pieces (principal directions, k-centre coreset, calibration share) over features extracted once.

    .venv/bin/python bench/anomaly_memory_variants.py                          # every variant, seeds 0, 1, 2
    .venv/bin/python bench/anomaly_memory_variants.py --variants default,top8 --seeds 0
    .venv/bin/python bench/anomaly_memory_variants.py --input native --variants default

Why a second variants bench: bench/anomaly_variants.py changes the features (backbone, levels, input shape) and
refits from the images each time; here the efficientnet_lite0 stride-8/16/32 patch features are computed once
(`--input square`: today's 256 px `anomaly_input`; `native`: each tile at its own size and aspect, sides rounded
to multiples of 32) and each variant changes only what the memory does with them, so three seeds of a variant
cost about five minutes. A seed picks the calibration images, the principal directions' sample and the
coreset's pool: the spread over seeds is the spread a user sees from one fit to the next.

Variants: `default` (the project's fit: 20 % of the good tiles calibrate, 64 principal directions, 8,000-patch
coreset, image score = its worst patch); `all_in_memory` (no calibration share); `top8` (mean of the 8 worst
patches); `memory_4000`; `dims_48`; `image_gaussian` (no patches: a Ledoit–Wolf Gaussian of each image's
per-channel feature mean and spread, Mahalanobis distance; deterministic); `gaussian_x_memory` (the product of
the two scores, each over its calibration images' median).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch
from _project import print_table, scratch_work
from anomaly_tiles import SHARED
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from defectops.anomaly import anomaly_input, read_rgb
from defectops.anomaly.memory import PatchMemory, _greedy_coreset, principal_directions
from defectops.components.ingest.step import IngestConfig, ingest
from defectops.dataset import label_path, read_labels, read_manifest
from defectops.pretrained import ImageNetBackbone

VARIANTS = {
    "default": {},
    "all_in_memory": {"calibration": 0.0},
    "top8": {"worst": 8},
    "memory_4000": {"bank": 4000},
    "dims_48": {"dims": 48},
    "image_gaussian": {"score": "gaussian"},
    "gaussian_x_memory": {"score": "product"},
}


def native_input(rgb: np.ndarray) -> np.ndarray:
    """`anomaly_input` without the squash: the tile's own size and aspect (sides to multiples of 32)."""
    h, w = rgb.shape[:2]
    x = cv2.resize(rgb, (max(64, round(w / 32) * 32), max(64, round(h / 32) * 32)),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1e-6) * 0.2 + 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def patch_features(paths, shape: str) -> list[torch.Tensor]:
    """Per image, its patches (rows) as the memory describes them before any projection."""
    memory = PatchMemory(ImageNetBackbone.of("efficientnet_lite0", (2, 3, 4)).eval(), torch.zeros(1, 1), 1.0)
    out = []
    with torch.no_grad():
        for path in paths:
            rgb = read_rgb(path)
            x = anomaly_input(rgb, 256) if shape == "square" else native_input(rgb)
            f = memory.features(torch.from_numpy(x)[None])[0]
            out.append(f.permute(1, 2, 0).reshape(-1, f.shape[0]).half())
    return out


def worst_patches(patches, projection, bank, worst: int) -> np.ndarray:
    bank_sq = (bank * bank).sum(1)
    scores = []
    for rows in patches:
        q = rows.float() @ projection
        d = ((q * q).sum(1, keepdim=True) - 2 * q @ bank.T + bank_sq[None]).clamp_min(0).min(1).values.sqrt()
        scores.append(float(d.topk(min(worst, len(d))).values.mean()))
    return np.array(scores)


def image_statistics(patches) -> np.ndarray:
    return np.stack([torch.cat([r.float().mean(0), r.float().std(0)]).numpy() for r in patches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--input", choices=("square", "native"), default="square")
    args = parser.parse_args()
    raw = scratch_work("defectops-anomaly-memory-") / "raw"
    ingest(IngestConfig(source="auto", path=SHARED / "magnetic-tile"), raw)
    rows = read_manifest(raw)
    split = np.array([r["split"] for r in rows])
    defective = np.array([bool(read_labels(label_path(raw, r["path"]))) for r in rows])
    kinds = [r["classes"] for r in rows]
    started = time.perf_counter()
    patches = patch_features([raw / r["path"] for r in rows], args.input)
    print(f"features of {len(rows)} tiles ({args.input}) in {time.perf_counter() - started:.0f} s")
    stats = image_statistics(patches)
    good = np.where((split == "train") & ~defective)[0]
    val, test = np.where(split == "val")[0], np.where(split == "test")[0]
    table = []
    for name in args.variants.split(","):
        v = {"calibration": 0.2, "dims": 64, "bank": 8000, "worst": 1, "score": "memory", **VARIANTS[name]}
        for seed in [int(s) for s in args.seeds.split(",")]:
            started = time.perf_counter()
            order = np.random.default_rng(seed).permutation(len(good))
            n_cal = int(round(len(good) * v["calibration"]))
            calibration, remembered = good[order[:n_cal]], good[order[n_cal:]]
            scores = np.ones(len(rows))
            if v["score"] in ("memory", "product"):
                pool = torch.cat([patches[i].float() for i in remembered])
                projection = principal_directions(pool, v["dims"], seed)
                bank = _greedy_coreset(pool @ projection, v["bank"], seed)
                del pool
                scored = np.concatenate([val, test, calibration])
                scores[scored] = worst_patches([patches[i] for i in scored], projection, bank, v["worst"])
                if n_cal:
                    scores /= np.median(scores[calibration])
            if v["score"] in ("gaussian", "product"):  # every good tile fits it when there is no calibration share
                gaussian = LedoitWolf().fit(stats[remembered if v["score"] == "product" else good])
                distance = gaussian.mahalanobis(stats)
                scores *= distance / (np.median(distance[calibration]) if v["score"] == "product" else 1.0)
            per_type = []
            for kind in sorted({kinds[i] for i in test if kinds[i]}):
                keep = np.array([kinds[i] in ("", kind) for i in test])
                auroc = roc_auc_score(defective[test][keep], scores[test][keep])
                per_type.append(f"{kind.removeprefix('MT_')} {auroc:.2f}")
            table.append((name, seed, f"{time.perf_counter() - started:.0f}",
                          f"{roc_auc_score(defective[val], scores[val]):.3f}",
                          f"{roc_auc_score(defective[test], scores[test]):.3f}", ", ".join(per_type)))
            print_table(table, ("variant", "seed", "fit + score s", "val AUROC", "test AUROC",
                                "test AUROC per defect type"))
    print(f"{len(good)} good training tiles; val {len(val)} ({defective[val].sum()} defective), "
          f"test {len(test)} ({defective[test].sum()} defective); input {args.input}")


if __name__ == "__main__":
    main()

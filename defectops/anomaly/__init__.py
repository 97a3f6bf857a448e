"""Label-free anomaly detection for line start-up: remember what defect-free parts look like, patch by patch.

Why this design (PatchCore's idea, our own small implementation): a new line has thousands of good parts
and almost no labelled defects. Anomalib's feature models (PatchCore, PaDiM, STFPM, EfficientAd) need
ImageNet backbones downloaded at run time, which an air-gapped line cannot do; its from-scratch DRAEM needs
hundreds of GPU epochs. Here the features come from ImageNet weights an installed package ships
(defectops/backbones.py, the default), or a YOLO backbone the user already has on disk. Fitting is one
forward pass over the good training images plus a coreset — minutes on a CPU — and an image's anomaly map
is each patch's distance to the nearest remembered good patch.

The score is calibrated on good images the memory did not see: `raw / (raw + typical good raw)`, so it lies
in [0, 1), a typical good part scores about 0.5, and the recall-first threshold, the gate, the registry and
the endpoint treat it like a detector's confidence.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from defectops.dataset import label_path, read_labels, read_manifest

ANOMALY = "anomaly"  # the single class an anomaly model reports


class AnomalyError(ValueError):
    pass


def anomaly_input(rgb: np.ndarray, imgsz: int) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> float32 (3, imgsz, imgsz): stretched, not letterboxed (no padding for the memory
    to learn as normal), and standardised per image, since lighting drifts from shot to shot on a real line.
    The one preprocessing of fitting, evaluation and the endpoint."""
    resized = cv2.resize(rgb, (imgsz, imgsz), interpolation=cv2.INTER_AREA).astype(np.float32)
    standardised = (resized - resized.mean()) / (resized.std() + 1e-6) * 0.2 + 0.5
    return np.ascontiguousarray(standardised.transpose(2, 0, 1))


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AnomalyError(f"{path}: not a readable image")
    return image[..., ::-1]


def training_images(dataset: Path, defective: bool) -> list[str]:
    """The train split's images (manifest paths) without defects - what a memory remembers - or with them: the
    ones it never saw, as unseen as val's for tuning the threshold."""
    return [r["path"] for r in read_manifest(dataset)
            if r["split"] == "train" and bool(read_labels(label_path(dataset, r["path"]))) == defective]

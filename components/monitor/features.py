"""Per-image features that drift monitoring compares: what the camera sees and what the model says.

Computed once per image, at inference (into the log) and at deployment (the reference), so a
drift check never re-decodes images.
"""

from __future__ import annotations

import cv2
import numpy as np

FEATURES = ("brightness", "contrast", "sharpness", "max_confidence", "n_detections")


def image_features(rgb: np.ndarray) -> dict[str, float]:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        # Variance of the Laplacian: drops when the lens defocuses or the part moves.
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
    }

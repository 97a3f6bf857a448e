"""Per-image features that drift monitoring compares: what the camera sees and what the model says.

Computed once per image, at inference (into the log) and at deployment (the reference), so a
drift check never re-decodes images. Besides pixel statistics, a compact embedding of the
model's backbone (global-average-pooled, projected on the reference set's main components)
catches shifts the statistics miss: a new product, a different surface finish.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

EMBEDDING_DIMS = 4
REDUCER_FILE = "embedding_pca.npz"


def image_features(rgb: np.ndarray) -> dict[str, float]:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV) if rgb.ndim == 3 else None
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        # Variance of the Laplacian: drops when the lens defocuses or the part moves.
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        # Residual after a 3x3 median: sensor noise and gain, not texture.
        "noise": float((grey.astype(np.float32) - cv2.medianBlur(grey, 3)).std()),
        "saturation": float(hsv[..., 1].mean()) if hsv is not None else 0.0,
        "colour_cast": float(rgb[..., 0].mean() - rgb[..., 2].mean()) if rgb.ndim == 3 else 0.0,
    }


class EmbeddingReducer:
    """Projects pooled backbone activations on the reference set's first principal components."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        self.mean, self.components = mean, components

    @classmethod
    def fit(cls, embeddings: np.ndarray, dims: int = EMBEDDING_DIMS) -> EmbeddingReducer:
        mean = embeddings.mean(axis=0)
        _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
        return cls(mean, vt[:dims])

    def transform(self, embedding: np.ndarray) -> dict[str, float]:
        projected = (embedding - self.mean) @ self.components.T
        return {f"emb_{i}": float(v) for i, v in enumerate(projected)}

    def save(self, folder: Path) -> None:
        np.savez(Path(folder) / REDUCER_FILE, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, folder: Path) -> EmbeddingReducer | None:
        path = Path(folder) / REDUCER_FILE
        if not path.exists():
            return None
        data = np.load(path)
        return cls(data["mean"], data["components"])

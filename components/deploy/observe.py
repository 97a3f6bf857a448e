"""What the endpoint records about one image, computed the same way for live traffic and the reference."""

from __future__ import annotations

import numpy as np

from defectops.components.deploy.detector import Detection, OnnxDetector
from defectops.drift_features import EmbeddingReducer, image_features


def observe(detector: OnnxDetector, rgb: np.ndarray,
            reducer: EmbeddingReducer | None) -> tuple[list[Detection], dict, np.ndarray | None]:
    """Detections, the drift features of the image, and the raw pooled embedding."""
    detections, embedding = detector.infer(rgb)
    scores = [d.score for d in detections]
    confident = [s for s in scores if s >= detector.threshold]
    record = {**image_features(rgb), "max_confidence": max(scores, default=0.0),
              "mean_confidence": float(np.mean(confident)) if confident else 0.0,
              "n_detections": len(confident)}
    if reducer is not None and embedding is not None:
        record.update(reducer.transform(embedding))
    return detections, record, embedding

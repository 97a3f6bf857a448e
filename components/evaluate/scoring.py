"""Per-image, per-class scores from a detector or a classifier, so evaluation, the gate and HPO
speak one language for both task types.

Detector: a class's score is its best box confidence (0 when none). Classifier: the class's
probability. An image's defect score is the best box (detector) or 1 - P(good) (classifier).
Anomaly model: its calibrated anomaly score, for the image and (it knows no types) every class.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from defectops.dataset import GOOD
from defectops.imaging import letterbox, read_bgr
from defectops.offline import configure_ultralytics
from defectops.tiling import detect_tiled

SCORE_FLOOR = 0.001  # boxes below this are noise; an image with none scores 0


def load_model(weights: Path):
    """An Ultralytics model, or an anomaly model; the task (detect, classify, anomaly) is read from the checkpoint."""
    configure_ultralytics()
    from ultralytics import YOLO

    from defectops.anomaly import memory as anomaly

    checkpoint = anomaly.load(weights)
    if checkpoint is not None:
        return anomaly.AnomalyModel(checkpoint)

    return YOLO(str(weights))


def tiled_boxes(model, image_bgr: np.ndarray, tiles: tuple[int, float], imgsz: int, device: str) -> list:
    """Merged boxes (tiling.TileBox, in the model's class ids) of one image the model saw tile by tile."""
    def detect(crops: list[np.ndarray]) -> list:
        # At most the endpoint's 100 boxes per tile: both then merge the same boxes, and an untrained
        # model's hundreds of near-floor boxes per tile do not make the merge quadratic in thousands.
        results = model.predict(crops, conf=SCORE_FLOOR, imgsz=imgsz, device=device, verbose=False, max_det=100)
        return [list(zip(map(int, r.boxes.cls.tolist()), r.boxes.conf.tolist(), map(tuple, r.boxes.xyxy.tolist())))
                for r in results]

    return detect_tiled(image_bgr, tiles[0], tiles[1], detect)


def score_images(model, root: Path, paths: list[str], imgsz: int, batch: int, device: str,
                 names: list[str], tiles: tuple[int, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(per-class scores of shape (images, len(names)), defect score per image). With `tiles` (side,
    overlap), images larger than a tile are scored tile by tile: an image's score is its best tile's."""
    if tiles and model.task == "detect":
        return _score_tiled(model, root, paths, imgsz, device, names, tiles)
    if model.task == "anomaly":  # one score per image and no defect type: every class column reads it
        image = model.scores([Path(root) / p for p in paths])
        return np.repeat(image[:, None], len(names), axis=1), image
    per_class = np.zeros((len(paths), len(names)))
    good = np.zeros(len(paths))
    column = {name: i for i, name in enumerate(names)}
    model_names = dict(model.names)
    for start in range(0, len(paths), batch):
        chunk = [str(Path(root) / p) for p in paths[start:start + batch]]
        if model.task == "classify":  # as trained and served: the whole part letterboxed (defectops.imaging)
            chunk = [letterbox(read_bgr(p), imgsz)[0] for p in chunk]
        results = model.predict(chunk, conf=SCORE_FLOOR, imgsz=imgsz, device=device, verbose=False)
        for offset, result in enumerate(results):
            row = start + offset
            if model.task == "classify":
                for class_id, p in enumerate(result.probs.data.tolist()):
                    name = model_names[class_id]
                    if name == GOOD:
                        good[row] = p
                    elif name in column:
                        per_class[row, column[name]] = p
            else:
                for class_id, conf in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist()):
                    name = model_names.get(int(class_id))
                    if name in column:
                        per_class[row, column[name]] = max(per_class[row, column[name]], conf)
    if model.task == "classify":
        return per_class, 1.0 - good
    return per_class, per_class.max(axis=1) if len(names) else np.zeros(len(paths))


def _score_tiled(model, root: Path, paths: list[str], imgsz: int, device: str, names: list[str],
                 tiles: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
    per_class = np.zeros((len(paths), len(names)))
    column = {name: i for i, name in enumerate(names)}
    model_names = dict(model.names)
    for row, rel in enumerate(paths):
        for box in tiled_boxes(model, cv2.imread(str(Path(root) / rel)), tiles, imgsz, device):
            name = model_names.get(box.class_id)
            if name in column:
                per_class[row, column[name]] = max(per_class[row, column[name]], box.score)
    return per_class, per_class.max(axis=1) if len(names) else np.zeros(len(paths))


def predicted_classes(per_class: np.ndarray, image: np.ndarray, threshold: float, names: list[str]) -> list[str]:
    """The image-level call at the operating threshold: good, or the best-scoring defect type."""
    return [names[int(np.argmax(row))] if score >= threshold and len(names) else GOOD
            for row, score in zip(per_class, image)]


def classification_report(predicted: list[str], truth: list[str], names: list[str]) -> dict:
    """Image-level accuracy and confusion matrix (rows predicted, columns true; labels names + good)."""
    labels = [*names, GOOD]
    index = {n: i for i, n in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for p, t in zip(predicted, truth):
        if p in index and t in index:
            matrix[index[p], index[t]] += 1
    correct = sum(p == t for p, t in zip(predicted, truth))
    return {"accuracy": correct / len(truth) if truth else float("nan"), "labels": labels, "matrix": matrix}

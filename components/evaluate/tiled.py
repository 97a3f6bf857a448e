"""Box mAP of a tiled detector on whole test images: the boxes the line would get (merged across tiles),
matched to the labels with Ultralytics' own matching and AP, so the number compares with its `val`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectops.components.evaluate.scoring import tiled_boxes
from defectops.dataset import Box


def match_image(matcher, preds: list[tuple[int, float, tuple]], truth: list[tuple[int, tuple]]) -> tuple:
    """Ultralytics' greedy matching for one image: `preds` (class, score, xyxy) and `truth` (class, xyxy) ->
    (true-positive flags per prediction and IoU threshold, scores, classes), predictions by descending score,
    as its matcher expects (IoU rows are labels, columns predictions)."""
    import torch
    from ultralytics.utils.metrics import box_iou

    preds = sorted(preds, key=lambda p: -p[1])
    tp = np.zeros((len(preds), len(matcher.iouv)), bool)
    if preds and truth:
        iou = box_iou(torch.tensor([t[1] for t in truth], dtype=torch.float32),
                      torch.tensor([p[2] for p in preds], dtype=torch.float32))
        tp = np.asarray(matcher.match_predictions(torch.tensor([p[0] for p in preds]),
                                                  torch.tensor([t[0] for t in truth]), iou))
    return tp, [p[1] for p in preds], [p[0] for p in preds]


def tiled_box_metrics(model, root: Path, paths: list[str], labels: dict[str, list[Box]], names: list[str],
                      imgsz: int, tiles: tuple[int, float], device: str) -> dict:
    import cv2
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class

    matcher = DetectionValidator()  # only its IoU thresholds (0.5:0.95) and greedy matching are used
    column = {name: i for i, name in enumerate(names)}
    model_names = dict(model.names)
    tps, confs, predicted, target = [], [], [], []
    for rel in paths:
        image = cv2.imread(str(Path(root) / rel))
        height, width = image.shape[:2]
        preds = [(column[model_names[b.class_id]], b.score, b.box)
                 for b in tiled_boxes(model, image, tiles, imgsz, device) if model_names.get(b.class_id) in column]
        truth = [(b.cls, b.to_pixels(width, height)) for b in labels[rel]]
        target += [c for c, _ in truth]
        if not preds:
            continue
        tp, scores, classes = match_image(matcher, preds, truth)
        tps.append(tp)
        confs += scores
        predicted += classes
    if not tps or not target:
        return {"test_map50": 0.0, "test_map50_95": 0.0}
    ap = ap_per_class(np.concatenate(tps), np.array(confs), np.array(predicted), np.array(target))[5]
    return {"test_map50": float(ap[:, 0].mean()), "test_map50_95": float(ap.mean())}

"""Box mAP of a tiled detector on whole test images: the boxes the line would get (merged across tiles),
matched to the labels with Ultralytics' own matching and AP, so the number compares with its `val`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectops.components.evaluate.scoring import tiled_boxes
from defectops.dataset import Box


def tiled_box_metrics(model, root: Path, paths: list[str], labels: dict[str, list[Box]], names: list[str],
                      imgsz: int, tiles: tuple[int, float], device: str) -> dict:
    import cv2
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

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
        tp = np.zeros((len(preds), len(matcher.iouv)), bool)
        if truth:
            iou = box_iou(torch.tensor([p[2] for p in preds]), torch.tensor([t[1] for t in truth]))
            tp = matcher.match_predictions(torch.tensor([p[0] for p in preds]),
                                           torch.tensor([t[0] for t in truth]), iou).numpy()
        tps.append(tp)
        confs += [p[1] for p in preds]
        predicted += [p[0] for p in preds]
    if not tps or not target:
        return {"test_map50": 0.0, "test_map50_95": 0.0}
    ap = ap_per_class(np.concatenate(tps), np.array(confs), np.array(predicted), np.array(target))[5]
    return {"test_map50": float(ap[:, 0].mean()), "test_map50_95": float(ap.mean())}

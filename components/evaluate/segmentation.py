"""What a segmentation model adds to evaluation: how exactly it measures a defect's area, the quantity severity
rules grade. Each true defect (a connected region of the canonical mask) is matched to the predicted outline
overlapping it best; the area errors of the mask and of its box are both reported, so the README's "masks
measure area, boxes overstate it" is a number on the user's own test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectops.dataset import mask_path

MATCH_IOU = 0.5  # a predicted outline counts as this defect's measurement from this mask IoU


def true_regions(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class id, boolean region) for every connected region of a canonical mask (0 background, c + 1 class c)."""
    import cv2

    regions = []
    for value in (int(v) for v in np.unique(mask) if v):
        count, labels = cv2.connectedComponents((mask == value).astype(np.uint8))
        regions += [(value - 1, labels == i) for i in range(1, count)]
    return regions


def match_regions(truth: list[tuple[int, np.ndarray]], predicted: list[tuple[int, np.ndarray, tuple]]) -> list:
    """For each true region, the best-overlapping predicted (class, mask, box) of any class at IoU >= MATCH_IOU,
    each prediction used once (largest true defects first): [(true region, prediction or None)]."""
    used, pairs = set(), []
    for cls, region in sorted(truth, key=lambda t: -t[1].sum()):
        best, best_iou = None, MATCH_IOU
        for j, (_, pred_mask, _) in enumerate(predicted):
            if j in used:
                continue
            iou = np.logical_and(region, pred_mask).sum() / max(np.logical_or(region, pred_mask).sum(), 1)
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
        pairs.append(((cls, region), predicted[best] if best is not None else None))
    return pairs


def area_errors(model, dataset: Path, paths: list[str], imgsz: int, threshold: float, device: str) -> dict:
    """Per-defect area error on `paths` (images with a mask) at the operating threshold, in source pixels."""
    import cv2

    mask_err, box_err, true_areas, found, total = [], [], [], 0, 0
    for rel in paths:
        path = mask_path(dataset, rel)
        if not path.exists():
            continue
        truth = true_regions(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        total += len(truth)
        result = model.predict(str(Path(dataset) / rel), conf=max(threshold, 1e-3), imgsz=imgsz, device=device,
                               retina_masks=True, verbose=False)[0]
        predicted = []
        if result.masks is not None:
            predicted = [(int(c), m.astype(bool), tuple(b)) for c, m, b in zip(
                result.boxes.cls.tolist(), result.masks.data.cpu().numpy() > 0.5, result.boxes.xyxy.tolist())]
        for (_, region), match in match_regions(truth, predicted):
            if match is None:
                continue
            found += 1
            area = float(region.sum())
            x1, y1, x2, y2 = match[2]
            true_areas.append(area)
            mask_err.append(abs(float(match[1].sum()) - area))
            box_err.append(abs((x2 - x1) * (y2 - y1) - area))
    if not true_areas:
        return {"test_defects": total, "test_defects_measured": 0, "test_area_mae_px": None,
                "test_area_mape": None, "test_box_area_mae_px": None, "test_box_area_mape": None}
    areas = np.array(true_areas)
    return {"test_defects": total, "test_defects_measured": found,
            "test_area_mae_px": round(float(np.mean(mask_err)), 2),
            "test_area_mape": round(float(np.mean(np.array(mask_err) / areas)), 4),
            "test_box_area_mae_px": round(float(np.mean(box_err)), 2),
            "test_box_area_mape": round(float(np.mean(np.array(box_err) / areas)), 4)}

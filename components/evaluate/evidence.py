"""The evidence an approver reads: per-class recall, the missed images, the recall guarantee, a model card."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from defectops.dataset import Box


def per_class_recall(paths: list[str], scores: np.ndarray, labels: dict[str, list[Box]], names: list[str],
                     threshold: float) -> list[dict]:
    """Image-level recall per defect class: of the images showing class c, how many were stopped."""
    rows = []
    for class_id, name in enumerate(names):
        with_class = [i for i, p in enumerate(paths) if any(b.cls == class_id for b in labels[p])]
        caught = sum(scores[i] >= threshold for i in with_class)
        rows.append({"class": name, "images": len(with_class), "caught": int(caught),
                     "recall": caught / len(with_class) if with_class else None})
    return rows


def false_negative_grid(root: Path, missed: list[str], labels: dict[str, list[Box]], names: list[str],
                        path: Path, tile: int = 192, columns: int = 4) -> Path:
    """Missed defective images side by side, their true boxes drawn in red: what the model lets through."""
    tiles = []
    for rel in missed[:16]:
        img = cv2.imread(str(Path(root) / rel))
        h, w = img.shape[:2]
        for b in labels[rel]:
            x1, y1, x2, y2 = (int(round(v)) for v in b.to_pixels(w, h))
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
            cv2.putText(img, names[b.cls] if b.cls < len(names) else str(b.cls), (x1, max(12, y1 - 3)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.resize(img, (tile, tile)))
    if not tiles:
        canvas = np.full((tile // 2, tile * 2, 3), 255, np.uint8)
        cv2.putText(canvas, "no missed defects", (10, tile // 4), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 128, 0), 2)
    else:
        while len(tiles) % columns:
            tiles.append(np.full((tile, tile, 3), 255, np.uint8))
        rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
        canvas = np.vstack(rows) if len(rows) > 1 else rows[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
    return path


def _num(value) -> str:
    return "—" if value is None or value != value else f"{value:.3f}"


def calibration_line(metrics: dict) -> str:
    """What the threshold's recall guarantee rests on: val, plus the train split's defective images when the
    model never saw them (an anomaly memory)."""
    calibration = metrics.get("calibration") or {}
    unseen = calibration.get("unseen_train_defective_images", 0)
    if not unseen:
        return f"one-sided 95 % lower bound {metrics['val_recall_lower_bound']:.3f}"
    return (f"threshold tuned on {calibration['defective_images']} defective images (val + {unseen} train images "
            f"the memory never saw): recall {calibration['recall']:.3f}, one-sided 95 % lower bound "
            f"{metrics['val_recall_lower_bound']:.3f}")


def model_card(metrics: dict, per_class: list[dict], run: dict) -> str:
    test, val = metrics["test"], metrics["val"]
    lines = [
        "# Model card", "",
        f"- **Training run**: `{run.get('run_id')}`; dataset (DVC md5) `{run.get('dataset_md5')}`",
        f"- **Model**: Ultralytics YOLO ({metrics.get('task', 'detect')}), image size {run.get('imgsz')} px",
        f"- **Operating threshold**: {metrics['threshold']:.4f} — catches ≥ {metrics['tuning_recall']:.2f} of the "
        f"tuning images' defects (below), and enough for the 95 % lower bound to reach the line requirement "
        f"{metrics['target_recall']:.2f} where their number allows; halfway to the next lower score",
        f"- **Validation**: recall {val['recall']:.3f} ({val['tp']}/{val['tp'] + val['fn']}), "
        + calibration_line(metrics),
        f"- **Test**: recall {test['recall']:.3f}, precision {test['precision']:.3f}, F1 {test['f1']:.3f}, "
        f"image-level accuracy {_num(metrics.get('test_accuracy'))}"
        + (f", mAP50 {metrics['test_map50']:.3f}, mAP50-95 {metrics['test_map50_95']:.3f}"
           if metrics.get("test_map50") is not None else ""),
        "", "| class | test images | caught | recall | own threshold | test recall at own threshold "
            "| other test images flagged for it there |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['class']} | {r['images']} | {r['caught']} | {_num(r['recall'])} | {_num(r.get('class_threshold'))} "
          f"| {_num(r.get('test_recall_at_class_threshold'))} | {_num(r.get('test_false_alarms_at_class_threshold'))} |"
          for r in per_class],
        "", "## Limits", "",
        f"- {len(metrics['test_false_negatives'])} defective test image(s) were missed (see false_negatives.png).",
    ]
    if metrics.get("small_validation_warning"):
        lines.append(f"- {metrics['small_validation_warning']}")
    lines.append("- Evaluated on held-out images of the same line and camera; new products, cameras or lighting "
                 "need their own evaluation (drift monitoring watches for them).")
    return "\n".join(lines) + "\n"

"""Recall-first operating point: a missed defect costs far more than a false reject."""

from __future__ import annotations

import math

import numpy as np


def tune_threshold(scores: np.ndarray, is_defect: np.ndarray, target_recall: float) -> float:
    """The highest confidence threshold whose image-level recall is still >= target_recall.

    Highest, because among thresholds that meet the recall target it rejects the fewest good
    parts. An image is called defective when its best box scores >= threshold.
    """
    positives = np.sort(np.asarray(scores, dtype=float)[np.asarray(is_defect, dtype=bool)])[::-1]
    if positives.size == 0:
        raise ValueError("cannot tune a recall threshold: the validation split has no defective images")
    needed = math.ceil(target_recall * positives.size - 1e-9)
    return float(positives[max(needed, 1) - 1])


def image_level_metrics(scores: np.ndarray, is_defect: np.ndarray, threshold: float) -> dict:
    scores, is_defect = np.asarray(scores, dtype=float), np.asarray(is_defect, dtype=bool)
    predicted = scores >= threshold
    tp = int((predicted & is_defect).sum())
    fp = int((predicted & ~is_defect).sum())
    fn = int((~predicted & is_defect).sum())
    tn = int((~predicted & ~is_defect).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def pr_curve(scores: np.ndarray, is_defect: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-level precision and recall at every distinct score, thresholds descending."""
    scores, is_defect = np.asarray(scores, dtype=float), np.asarray(is_defect, dtype=bool)
    thresholds = np.unique(scores)[::-1]
    precision, recall = [], []
    for t in thresholds:
        m = image_level_metrics(scores, is_defect, t)
        precision.append(m["precision"])
        recall.append(m["recall"])
    return np.array(precision), np.array(recall), thresholds

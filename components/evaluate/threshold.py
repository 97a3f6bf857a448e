"""Recall-first operating point: a missed defect costs far more than a false reject."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta


def recall_lower_bound(caught: int, total: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound on recall: with `confidence`, true recall is at least this."""
    if total == 0:
        return float("nan")
    if caught == 0:
        return 0.0
    return float(beta.ppf(1 - confidence, caught, total - caught + 1))


def caught_for_bound(defective: int, target_recall: float, confidence: float = 0.95) -> int | None:
    """The fewest of `defective` images a threshold must catch for the lower bound to reach `target_recall`;
    None when even catching all of them cannot show it (too few defective images)."""
    if recall_lower_bound(defective, defective, confidence) < target_recall:
        return None
    caught = defective  # the bound grows with every image caught: walk down from all while it still holds
    while caught > 1 and recall_lower_bound(caught - 1, defective, confidence) >= target_recall:
        caught -= 1
    return caught


def operating_threshold(scores: np.ndarray, is_defect: np.ndarray, tuning_recall: float,
                        target_recall: float) -> float:
    """The threshold the line runs at, chosen on calibration images the model did not learn from.

    It catches at least `tuning_recall` of their defects and, where their number can show it, as many more as
    it takes for the one-sided 95 % lower bound on recall to reach `target_recall` (a point estimate of 0.98
    on 50 defects proves little: unseen parts fall short). With too few defects for any bound it catches all
    of them and evaluation warns. It sits halfway between the weakest defect it must catch and the next lower
    score: every threshold in that gap reads the same on these images, and its top edge is the one an unseen
    defect slightly weaker than any seen would slip under.
    """
    scores, is_defect = np.asarray(scores, dtype=float), np.asarray(is_defect, dtype=bool)
    positives = np.sort(scores[is_defect])[::-1]
    if positives.size == 0:
        raise ValueError("cannot tune a recall threshold: the validation split has no defective images")
    needed = max(math.ceil(tuning_recall * positives.size - 1e-9), 1,
                 caught_for_bound(positives.size, target_recall) or positives.size)
    edge = float(positives[needed - 1])
    below = scores[scores < edge]
    return (edge + float(below.max())) / 2 if below.size else edge


def evidence_warning(scores: np.ndarray, is_defect: np.ndarray, threshold: float, target_recall: float) -> str | None:
    """What an approver must read before trusting the operating point; None when the calibration images back it.

    Too few defective images for any threshold to show `target_recall` (the bound), or a threshold that catches
    the defects it must only by rejecting every good image too: a defect the model does not see scores no higher
    than a good part, and the recall target is met on paper by a line that would scrap every part."""
    m = image_level_metrics(scores, is_defect, threshold)
    defective, good = m["tp"] + m["fn"], m["fp"] + m["tn"]
    warnings = []
    if caught_for_bound(defective, target_recall) is None:
        warnings.append(f"the threshold was tuned on {defective} defective images: even catching all of them "
                        f"cannot show recall >= {target_recall} with 95 % confidence; add defective validation images")
    if good and m["tn"] == 0:
        warnings.append(f"the operating threshold ({threshold:.3g}) rejects all {good} good calibration images: some "
                        "defects score no higher than any good part")
    return "; and ".join(warnings) or None


def tune_threshold(scores: np.ndarray, is_defect: np.ndarray, target_recall: float) -> float:
    """The highest confidence threshold whose image-level recall is still >= target_recall (HPO's comparison
    and per-class read-outs; the line's own is `operating_threshold`).

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

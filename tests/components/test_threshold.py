import numpy as np
import pytest

from defectops.components.evaluate.threshold import image_level_metrics, pr_curve, tune_threshold


def test_highest_threshold_that_keeps_target_recall():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.85, 0.02])
    truth = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    t = tune_threshold(scores, truth, 0.8)
    assert t == pytest.approx(0.2)  # 8 of 10 defects at >= 0.2
    assert image_level_metrics(scores, truth, t)["recall"] >= 0.8
    assert image_level_metrics(scores, truth, 0.3)["recall"] < 0.8  # the next score up misses the target
    assert tune_threshold(scores, truth, 1.0) == pytest.approx(0.05)


@pytest.mark.parametrize("seed", range(5))
def test_property_recall_target_is_met_and_threshold_is_maximal(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(200) < 0.6
    scores = np.where(truth, rng.beta(4, 2, 200), rng.beta(2, 4, 200))
    for target in (0.8, 0.9, 0.95, 0.99):
        t = tune_threshold(scores, truth, target)
        assert image_level_metrics(scores, truth, t)["recall"] >= target
        higher = scores[truth & (scores > t)]
        if higher.size:
            assert image_level_metrics(scores, truth, higher.min())["recall"] < target


def test_no_defects_in_val_is_an_error():
    with pytest.raises(ValueError, match="no defective images"):
        tune_threshold(np.array([0.2, 0.3]), np.array([False, False]), 0.95)


def test_metrics_counts_and_curve():
    m = image_level_metrics(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 1, 0, 0], dtype=bool), 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["recall"] == 0.5 and m["precision"] == 0.5
    precision, recall, thresholds = pr_curve(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 1, 0, 0], dtype=bool))
    assert list(thresholds) == sorted(thresholds, reverse=True)
    assert recall[-1] == 1.0 and np.all(np.diff(recall) >= 0)

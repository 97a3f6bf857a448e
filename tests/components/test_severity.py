"""Severity rules: after the recall-first call, a rejected part's defects are graded by their area."""

import pytest
from pydantic import ValidationError

from defectops.components.deploy.decision import SeverityRule, apply_severity
from defectops.components.deploy.serve_config import ServeConfig

RULES = {"pit": SeverityRule(review_mm2=0.2, reject_mm2=1.0)}


def box(name, score, side_px):
    return {"class_name": name, "score": score, "box": [10.0, 10.0, 10.0 + side_px, 10.0 + side_px]}


@pytest.mark.parametrize(("side_px", "expected"), [(3, "accept"), (6, "review"), (12, "reject")])
def test_a_pit_is_graded_by_its_area_in_mm2(side_px, expected):
    boxes = [box("pit", 0.9, side_px)]  # at 0.1 mm/px: 0.09, 0.36 and 1.44 mm²
    assert apply_severity("reject", boxes, 0.5, RULES, mm_per_px=0.1) == expected
    assert boxes[0]["severity"] == expected
    assert boxes[0]["area_px"] == side_px ** 2 and boxes[0]["area_mm2"] == pytest.approx(side_px ** 2 / 100)


def test_the_worst_defect_decides_and_unruled_classes_stay_rejects():
    tiny_pit, crack = box("pit", 0.9, 2), box("crack", 0.8, 2)
    assert apply_severity("reject", [tiny_pit, crack], 0.5, RULES, 0.1) == "reject"
    assert crack["severity"] == "reject" and tiny_pit["severity"] == "accept"


def test_a_tolerable_defect_beside_a_near_miss_goes_to_a_person():
    boxes = [box("pit", 0.9, 2), box("crack", 0.3, 20)]  # the crack is under the threshold, in the review band
    assert apply_severity("reject", boxes, 0.5, RULES, 0.1) == "review"
    assert "severity" not in boxes[1] and boxes[1]["area_mm2"] == pytest.approx(4.0)


def test_only_rejects_are_graded_and_areas_are_always_reported():
    boxes = [box("pit", 0.4, 30)]
    assert apply_severity("review", boxes, 0.5, RULES, None) == "review"
    assert boxes[0]["area_px"] == 900 and "area_mm2" not in boxes[0] and "severity" not in boxes[0]
    assert apply_severity("reject", [box("pit", 0.9, 30)], 0.5, {}, None) == "reject"


def test_rules_are_checked_where_they_are_written():
    with pytest.raises(ValidationError, match="need serve.mm_per_px"):
        ServeConfig(severity={"pit": {"review_mm2": 0.2, "reject_mm2": 1.0}})
    with pytest.raises(ValidationError, match="review limit 2.0 is above reject limit 1.0"):
        ServeConfig(severity={"pit": {"review_px": 2.0, "reject_px": 1.0}}, mm_per_px=0.1)
    with pytest.raises(ValidationError, match="in one unit"):
        SeverityRule(review_px=1, reject_mm2=2)
    with pytest.raises(ValidationError, match="in one unit"):
        SeverityRule()
    assert SeverityRule(reject_px=100).grade(50) == "review"  # only a scrap limit: smaller ones still get a look
    assert ServeConfig(severity={"pit": {"reject_px": 100}}).severity["pit"].reject_px == 100

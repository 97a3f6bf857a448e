"""From detections to the line's decision. One rule, used by the endpoint and the reference set."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_REVIEW = (1.0, 1.0)
ORDER = ("accept", "review", "reject")


def decide(max_score: float, threshold: float, review_band: tuple[float, float] = NO_REVIEW) -> str:
    """'reject' at or above threshold x band[1], 'review' from threshold x band[0], else 'accept'.

    The default band (0.5, 1.0) in params.yaml sends near-misses below the operating threshold
    to a human instead of shipping them: recall first.
    """
    low, high = review_band
    if max_score >= threshold * high:
        return "reject"
    if max_score >= threshold * low:
        return "review"
    return "accept"


class SeverityRule(BaseModel):
    """Area limits for one defect class, in mm² (needs `serve.mm_per_px`) or in pixels: below `review_*` the
    detected defect is tolerable (accept), from it a person looks (review), from `reject_*` it is scrap."""

    model_config = ConfigDict(extra="forbid")
    review_mm2: float | None = Field(None, ge=0)
    reject_mm2: float | None = Field(None, ge=0)
    review_px: float | None = Field(None, ge=0)
    reject_px: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_unit_in_order(self):
        mm2 = (self.review_mm2, self.reject_mm2)
        px = (self.review_px, self.reject_px)
        if any(v is not None for v in mm2) == any(v is not None for v in px):
            raise ValueError("expected limits in one unit: review_mm2/reject_mm2 or review_px/reject_px")
        low, high = mm2 if any(v is not None for v in mm2) else px
        if low is not None and high is not None and low > high:
            raise ValueError(f"review limit {low} is above reject limit {high}")
        return self

    @property
    def in_mm2(self) -> bool:
        return self.review_mm2 is not None or self.reject_mm2 is not None

    def grade(self, area: float) -> str:
        """area in the rule's unit -> accept / review / reject."""
        review, reject = (self.review_mm2, self.reject_mm2) if self.in_mm2 else (self.review_px, self.reject_px)
        if reject is not None and area >= reject:
            return "reject"
        if review is not None and area >= review:
            return "review"
        return "accept" if review is not None else "review"  # only a reject limit: smaller ones still get a look


def apply_severity(decision: str, boxes: list[dict], threshold: float, rules: dict[str, SeverityRule],
                   mm_per_px: float | None) -> str:
    """After the recall-first call: every box gets its area (px, and mm² when the scale is known); a rejected
    image's defects at or above the threshold are graded by their class's rule (a class without one stays a
    reject) and the image takes the worst grade, or review if a near-miss box is also shown. The area is the
    mask's where a segmentation model traced one (`area_px` already set), else the box's, which overstates
    it (a detector; an anomaly model's hottest region): `area_from` says which."""
    for box in boxes:
        x1, y1, x2, y2 = box["box"]
        box["area_from"] = "mask" if "area_px" in box else "box"
        box.setdefault("area_px", round(max(x2 - x1, 0.0) * max(y2 - y1, 0.0), 1))
        if mm_per_px:
            box["area_mm2"] = round(box["area_px"] * mm_per_px ** 2, 4)
    if decision != "reject" or not rules:
        return decision
    grades = []
    for box in boxes:
        if box["score"] < threshold:
            continue
        rule = rules.get(box["class_name"])
        box["severity"] = rule.grade(box["area_mm2"] if rule and rule.in_mm2 else box["area_px"]) if rule else "reject"
        grades.append(box["severity"])
    worst = max(grades, key=ORDER.index, default="reject")
    if worst == "accept" and any(box["score"] < threshold for box in boxes):
        return "review"
    return worst

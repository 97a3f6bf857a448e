"""From detections to the line's decision. One rule, used by the endpoint and the reference set."""

from __future__ import annotations

NO_REVIEW = (1.0, 1.0)


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

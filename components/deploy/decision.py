"""From detections to the line's decision. One rule, used by the endpoint and the reference set."""

from __future__ import annotations

from collections.abc import Sequence


def decide(scores: Sequence[float], threshold: float) -> str:
    """'reject' when any box reaches the operating threshold, else 'accept'."""
    return "reject" if any(s >= threshold for s in scores) else "accept"

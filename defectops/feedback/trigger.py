"""Inspectors overruling the model: a second drift signal, stronger than image statistics.

An image-statistics test says the pictures changed; inspectors disagreeing with the champion say its
decisions are wrong, which is what drift costs. The check reads the newest answers about the versions
that made the window's decisions and starts retraining by the same debounced path a drift alert takes.
"""

from __future__ import annotations

from defectops.feedback.answers import recent_disagreement
from defectops.feedback.config import FeedbackConfig
from defectops.records.store import DecisionStore


def disagreement_check(records: str, config: FeedbackConfig, versions: list[str]) -> dict:
    """Per version: answers, disagreements, rate; `exceeded` names the first version over the limit."""
    store = DecisionStore(records)
    try:
        per_version = [recent_disagreement(store, v, config.window) for v in versions]
    finally:
        store.close()
    over = [r for r in per_version if r["answers"] >= config.min_answers and r["rate"] > config.max_disagreement]
    return {"versions": per_version, "max_disagreement": config.max_disagreement, "min_answers": config.min_answers,
            "exceeded": over[0] if over else None}

"""Is a candidate not worse than its reference? One rule for the champion/challenger gate (evaluate: a new model
against the one on the line) and the re-validation of a faster variant (deploy: INT8 against its FP32 export).

Each metric must be defined, at or above its floor (an absolute target) and within its allowed drop of the
reference's. An undefined metric refuses: the recall of a test split without a defective image is NaN, and
"not worse" cannot be shown on nothing — a comparison that let NaN through would register a model whose
recall nobody measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

UNDEFINED = {
    "recall": "undefined: the test split holds no defective image, so no miss can be counted; add defective "
              "test images",
    "precision": "undefined: no test image was flagged",
}


def _defined(value: float) -> bool:
    return value is not None and math.isfinite(value)


def shortfalls(candidate: Mapping[str, float], reference: Mapping[str, float] | None = None, *,
               floors: Mapping[str, float] | None = None, drops: Mapping[str, float] | None = None,
               reference_name: str = "the reference", drop_setting: str | None = None) -> list[str]:
    """Every way `candidate` falls short, recall first; empty when it is not worse.

    `floors`: metric -> the least value accepted. `drops`: metric -> how far below `reference`'s value it may
    fall (negative: it must beat the reference by that much); `drop_setting` names the setting that says so."""
    floors, drops = dict(floors or {}), dict(drops or {})
    reasons = []
    for metric in sorted({*floors, *drops}, key=lambda m: (m != "recall", m)):
        value = candidate.get(metric, float("nan"))
        if not _defined(value):
            reasons.append(f"test {metric} is {UNDEFINED.get(metric, 'undefined')}")
            continue
        if metric in floors and value < floors[metric]:
            reasons.append(f"test {metric} {value:.4f} < target {floors[metric]:g}")
        if metric in drops and reference is not None:
            held = reference.get(metric, float("nan"))
            allowed = drops[metric]
            if not _defined(held):
                reasons.append(f"{reference_name}'s test {metric} is {UNDEFINED.get(metric, 'undefined')}")
            elif value < held - allowed:
                by = f" - {allowed:g}" + (f" ({drop_setting})" if drop_setting else "") if allowed else ""
                reasons.append(f"test {metric} {value:.4f} < {reference_name}'s {held:.4f}{by}")
    return reasons

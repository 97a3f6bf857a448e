"""Champion/challenger gate: a new model is registered only if it is not worse than production.

Both models are scored on the same test split, each at its own operating threshold (the one it
would be served with), so the comparison is what the line would actually experience.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from defectops.comparison import shortfalls
from defectops.registries import Registry
from defectops.tiling import tiling_of


def compare(challenger: dict, champion: dict, margin: float) -> tuple[bool, str]:
    """Not worse = recall and precision each within `margin` of the champion's (negative margin: the challenger
    must beat the champion by that much), both defined; the rule is `defectops.comparison`'s."""
    reasons = shortfalls(challenger, champion, drops={"recall": margin, "precision": margin},
                         reference_name="champion", drop_setting="evaluate.gate_margin")
    if reasons:
        return False, "; ".join(reasons)
    return True, (f"recall {challenger['recall']:.3f} vs {champion['recall']:.3f}, precision "
                  f"{challenger['precision']:.3f} vs {champion['precision']:.3f} (margin {margin:g})")


def champion_on_split(registry: Registry, score_images, truth, image_level_metrics) -> dict | None:
    """The registry champion's test metrics at its own threshold, or None when there is no champion."""
    champion = registry.champion()
    if champion is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        weights = registry.fetch_weights(champion, Path(tmp))

        scores = score_images(weights, int(champion.tags.get("imgsz", 256)), tiling_of(champion.tags))
    threshold = float(champion.tags["threshold"])
    return {"version": champion.version, "threshold": threshold,
            "test": image_level_metrics(scores, truth, threshold)}

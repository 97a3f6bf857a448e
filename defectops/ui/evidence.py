"""What the review page draws from a version's evidence (`defectops.evidence`): PR curves, the audit history."""

from __future__ import annotations

import csv
import io

import numpy as np

from defectops import audit
from defectops.components.evaluate.threshold import pr_curve
from defectops.evidence import Evidence


def pr_points(evidence: Evidence, split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
    path = evidence.file("per_image.csv")
    if path is None:
        return None
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    scores = np.array([float(r["score"]) for r in rows])
    truth = np.array([r["is_defect"] == "1" for r in rows])
    precision, recall, _ = pr_curve(scores, truth)
    return recall, precision


def pr_png(challenger: Evidence, champion: Evidence | None) -> bytes:
    """Both PR curves on the test split with both operating points, so the trade-off is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=100)
    for label, evidence, colour in (("challenger", challenger, "tab:orange"), ("champion", champion, "tab:blue")):
        if evidence is None or evidence is challenger and label == "champion":
            continue
        curve = pr_points(evidence)
        if curve is None:
            continue
        ax.plot(curve[0], curve[1], drawstyle="steps-post", color=colour, label=f"{label} v{evidence.info.version}")
        test = evidence.metrics.get("test", {})
        if test:
            ax.scatter([test["recall"]], [test["precision"]], color=colour, edgecolors="black", s=70, zorder=5,
                       label=f"{label} operating point (thr {evidence.metrics['threshold']:.3f})")
    target = challenger.metrics.get("target_recall")
    if target:
        ax.axvline(target, color="grey", linestyle="--", linewidth=1, label=f"target recall {target:.2f}")
    ax.set(xlabel="image-level recall", ylabel="image-level precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Test split: challenger vs champion")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def history(name: str) -> list[dict]:
    """The model's decisions, one row each (intent and confirmation together)."""
    return audit.decisions([e for e in audit.read() if e["model"] == name])

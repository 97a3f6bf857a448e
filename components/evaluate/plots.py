"""Evaluation figures, drawn with matplotlib's bundled font (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_pr_curves(curves: dict[str, tuple], operating: dict[str, tuple[float, float]], threshold: float,
                   target_recall: float, path: Path) -> Path:
    """curves: label -> (precision, recall); operating: label -> (recall, precision) at the threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    for label, (precision, recall) in curves.items():
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{label} split")
    for label, (rec, prec) in operating.items():
        ax.scatter([rec], [prec], s=70, zorder=5, edgecolors="black", label=f"{label} @ thr={threshold:.3f}")
    ax.axvline(target_recall, color="grey", linestyle="--", linewidth=1, label=f"target recall {target_recall:.2f}")
    ax.set(xlabel="image-level recall", ylabel="image-level precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Defect / no-defect PR curve (operating point marked)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix, labels: list[str], path: Path) -> Path:
    """Rows = predicted, columns = true: box-level for a detector (Ultralytics' matching at IoU 0.45,
    last label 'background'), image-level for a classifier (last label 'good')."""
    import numpy as np

    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.5), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    level = "box" if labels[-1] == "background" else "image"
    ax.set(xlabel="true", ylabel="predicted", title=f"Test split: {level}-level confusion")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

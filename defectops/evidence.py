"""A version's evaluation evidence (metrics, per-class recall, the folder of its artefacts), wherever a
registry keeps it: the review page, the CLI and every registry backend read it the same way."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from defectops import registry


@dataclass
class Evidence:
    info: registry.VersionInfo
    metrics: dict
    per_class: list[dict]
    folder: Path | None  # local copy of the run's evaluation artefacts

    def file(self, name: str) -> Path | None:
        path = self.folder / name if self.folder else None
        return path if path and path.exists() else None


def load_folder(info: registry.VersionInfo, folder: Path | None) -> Evidence:
    """Evidence from a local copy of a version's evaluation folder (wherever it was fetched from)."""
    metrics_file = folder / "metrics.json" if folder else None
    metrics = json.loads(metrics_file.read_text()) if metrics_file and metrics_file.exists() else {}
    per_class_file = folder / "per_class.json" if folder else None
    per_class = json.loads(per_class_file.read_text()) if per_class_file and per_class_file.exists() else []
    return Evidence(info, metrics, per_class, folder)

"""Every step writes a small JSON of metrics next to its outputs (DVC, KFP and SageMaker read it)."""

from __future__ import annotations

import json
import time
from pathlib import Path


class StepTimer:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self._start, 3)


def write_metrics(path: Path, metrics: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n")
    return path


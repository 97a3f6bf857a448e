"""run.json: what evaluate, register and the engines read about a training, whatever its task."""

from __future__ import annotations

import json
from pathlib import Path

from defectops.dataset import read_provenance
from defectops.tracking import tracking_uri


def write_run_record(out: Path, run, lineage: dict, dataset: Path, task: str, imgsz: int, tile: int | None,
                     tile_overlap: float | None, resumed: bool) -> dict:
    """run.json: what evaluate, register and the engines read about a training, whatever its task."""
    run_info = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "tracking_uri": tracking_uri(),
                "model_artifact": "model/best.pt", **lineage, "imgsz": imgsz, "tile": tile,
                "tile_overlap": tile_overlap, "task": task, "resumed": resumed,
                # inspector-answered images among the training data, and whose answers (four-eyes reads it)
                "feedback": read_provenance(dataset).get("feedback", {})}
    (Path(out) / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    return run_info

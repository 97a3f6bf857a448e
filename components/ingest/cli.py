from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    out: Path = typer.Option(Path("data/raw"), help="Where the canonical dataset is written (replaced)."),
    source: str = typer.Option(None, help="Override params: synthetic, yolo or voc."),
    path: Path = typer.Option(None, help="Override params: folder to import (yolo/voc)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Generate the synthetic dataset, or import YOLO / Pascal VOC data, into the canonical format."""
    from defectops.components.ingest.step import IngestConfig, ingest

    overrides = {k: v for k, v in {"source": source, "path": path}.items() if v is not None}
    run_step("ingest", IngestConfig, ingest, out, params=params, overrides=overrides)

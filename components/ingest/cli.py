from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    out: Path = typer.Option(Path("data/raw"), help="Where the canonical dataset is written (replaced)."),
    source: str = typer.Option(None, help="Override params: synthetic, auto, yolo, voc, coco, folders, mvtec."),
    path: Path = typer.Option(None, help="Override params: folder (or COCO .json) to import."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Generate the synthetic dataset, or import YOLO, VOC, COCO, class folders or MVTec-AD, into canonical form."""
    from defectops.components.ingest.step import IngestConfig, ingest

    overrides = {k: v for k, v in {"source": source, "path": path}.items() if v is not None}
    run_step("ingest", IngestConfig, ingest, out, params=params, overrides=overrides)


def import_command(
    src: Path = typer.Argument(..., help="Folder (or COCO .json) to import."),
    fmt: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco, folders or mvtec."),
    out: Path = typer.Option(Path("data/raw"), help="Where the canonical dataset is written (replaced)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Import your own images into the canonical format (the format is detected unless given).

    To make the pipeline import it on every run, set ingest.source and ingest.path in params.yaml.
    """
    from defectops.components.ingest.step import IngestConfig, ingest

    run_step("ingest", IngestConfig, ingest, out, params=params, overrides={"source": fmt, "path": src})

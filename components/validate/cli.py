from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    dataset: Path = typer.Option(Path("data/raw"), help="Canonical dataset to check (never changed)."),
    report: Path = typer.Option(Path("reports/validate"), help="Folder for report.json / .html / .txt."),
    out: Path = typer.Option(None, help="Where the clean dataset goes when the gate passes (e.g. data/validated)."),
    quarantine: Path = typer.Option(None, help="Where bad files are copied with reasons (default: REPORT/quarantine)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Check the dataset against the data contract (Great Expectations); exit 3 when it is rejected."""
    from defectops.components.validate.step import ValidateConfig, validate

    run_step("validate", ValidateConfig, validate, dataset, report, out, quarantine, params=params)

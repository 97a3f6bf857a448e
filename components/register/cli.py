from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    model: Path = typer.Option(Path("models/train"), help="Output folder of the train step."),
    evaluation: Path = typer.Option(Path("reports/evaluate"), help="Output folder of the evaluate step."),
    out: Path = typer.Option(Path("reports/register"), help="Folder for registration.json."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Register the evaluated model as a new version pending human approval."""
    from defectops.components.register.step import RegisterConfig, register

    run_step("register", RegisterConfig, register, model, evaluation, out, params=params)

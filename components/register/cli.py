from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, show_metrics, step_errors


def command(
    model: Path = typer.Option(Path("models/train"), help="Output folder of the train step."),
    evaluation: Path = typer.Option(Path("reports/evaluate"), help="Output folder of the evaluate step."),
    out: Path = typer.Option(Path("reports/register"), help="Folder for registration.json."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Register the evaluated model as a new version pending human approval."""
    from defectops.components.register.step import RegisterConfig, register
    from defectops.config import load_step_config

    with step_errors("register"):
        show_metrics("register", register(load_step_config(RegisterConfig, "register", params), model, evaluation, out))

from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step
from defectops.registries import open_registry_from


def command(
    model: Path = typer.Option(Path("models/train"), help="Output folder of the train step."),
    evaluation: Path = typer.Option(Path("reports/evaluate"), help="Output folder of the evaluate step."),
    out: Path = typer.Option(Path("reports/register"), help="Folder for registration.json."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Register the evaluated model as a new version pending human approval."""
    from defectops.components.register.step import RegisterConfig, register

    def register_in_configured_registry(config: RegisterConfig, *paths: Path) -> dict:
        return register(config, *paths, registry=open_registry_from(params, config.model_name))

    run_step("register", RegisterConfig, register_in_configured_registry, model, evaluation, out, params=params)

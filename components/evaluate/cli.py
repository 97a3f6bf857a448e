from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step
from defectops.registries import open_registry_from


def command(
    model: Path = typer.Option(Path("models/train"), help="Output folder of the train step."),
    dataset: Path = typer.Option(Path("data/validated"),
                                 help="Dataset whose val/test splits are used (validated, un-augmented)."),
    out: Path = typer.Option(Path("reports/evaluate"), help="Folder for metrics, threshold and PR curve."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Tune the recall-first threshold on val and report recall, precision and mAP on test."""
    from defectops.components.evaluate.step import EvaluateConfig, evaluate

    def against_the_configured_champion(config: EvaluateConfig, *paths: Path) -> dict:
        return evaluate(config, *paths, registry=open_registry_from(params, config.model_name))

    run_step("evaluate", EvaluateConfig, against_the_configured_champion, model, dataset, out, params=params)

from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step
from defectops.config import read_params


def command(
    dataset: Path = typer.Option(Path("data/augmented"), help="Canonical dataset to train on."),
    out: Path = typer.Option(Path("models/train"), help="Folder for weights, run.json and metrics.json."),
    best_params: Path = typer.Option(None, help="best_params.yaml from 'defectops tune': its settings override "
                                                "the train section."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Train a YOLO detector from its model yaml and record the run in MLflow."""
    from defectops.components.train.step import TrainConfig, train
    from defectops.components.train.weights import champion_registry

    def from_the_configured_registry(config: TrainConfig, *paths: Path) -> dict:
        return train(config, *paths, registry=champion_registry(params, config.weights, config.model_name))

    overrides = read_params(best_params).get("train", {}) if best_params else {}
    run_step("train", TrainConfig, from_the_configured_registry, dataset, out, params=params, overrides=overrides)

from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, show_metrics, step_errors
from defectops.config import load_step_config


def command(
    dataset: Path = typer.Option(Path("data/augmented"), help="Canonical dataset (train and val splits)."),
    out: Path = typer.Option(Path("models/tune"), help="Folder for best_params.yaml, trials.csv, metrics.json."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Search training settings with Optuna; the winner goes to best_params.yaml for 'defectops train'."""
    from defectops.components.train.step import TrainConfig
    from defectops.components.train.weights import champion_registry
    from defectops.components.tune.step import TuneConfig, tune

    with step_errors("tune"):
        train_config = load_step_config(TrainConfig, "train", params)
        registry = champion_registry(params, train_config.weights, train_config.model_name)
        show_metrics("tune", tune(load_step_config(TuneConfig, "tune", params), train_config, dataset, out, registry))

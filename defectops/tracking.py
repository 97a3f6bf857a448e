"""Where runs and models are recorded: MLflow on a local sqlite file unless told otherwise."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite under the current project folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def configure_mlflow(experiment: str) -> str:
    """Point MLflow at our store and make sure the experiment exists; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        mlflow.set_experiment(experiment)
        return existing.experiment_id
    artifacts = os.environ.get("DEFECTOPS_ARTIFACT_ROOT") or Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return experiment_id


def metric_key(name: str) -> str:
    """Ultralytics names like 'metrics/mAP50(B)' contain characters MLflow refuses."""
    return re.sub(r"[^0-9A-Za-z_\-./ :]", "", name)

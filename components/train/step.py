"""Train: Ultralytics YOLO from a model yaml (no pretrained weights), tracked in MLflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydantic import Field

from defectops.config import StepConfig
from defectops.dataset import ultralytics_view
from defectops.lineage import dvc_dir_md5, git_commit
from defectops.metrics import StepTimer, write_metrics
from defectops.tracking import configure_mlflow, metric_key, tracking_uri


class TrainConfig(StepConfig):
    model: str = Field("yolov8n.yaml", description="Ultralytics model yaml; built from scratch, never downloaded.")
    epochs: int = Field(20, ge=1)
    imgsz: int = Field(256, ge=32, multiple_of=32)
    batch: int = Field(16, ge=1)
    device: str = Field("cpu", description="'cpu', a CUDA index like '0', or 'auto'.")
    workers: int = Field(2, ge=0)
    seed: int = 0
    lr0: float = Field(0.01, gt=0)
    patience: int = Field(100, ge=1)
    cache: bool = Field(True, description="Cache decoded images in RAM (small datasets).")
    experiment: str = "defectops"


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def dataset_lineage(dataset: Path) -> dict[str, str]:
    """The versioned dataset a model descends from, and the exact training set it saw.

    An augmented set names its source in augment_metrics.json; a raw set is its own source.
    """
    seen = dvc_dir_md5(dataset)
    augment_record = Path(dataset) / "augment_metrics.json"
    source = json.loads(augment_record.read_text()).get("source_dataset_md5") if augment_record.exists() else None
    return {"dataset_md5": source or seen, "train_data_md5": seen}


def train(config: TrainConfig, dataset: Path, out: Path) -> dict:
    """Train on the canonical dataset at `dataset`; write weights and run info under `out`."""
    import mlflow

    from defectops.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO

    timer = StepTimer()
    dataset, out = Path(dataset), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    lineage = dataset_lineage(dataset)
    configure_mlflow(config.experiment)
    device = _resolve_device(config.device)

    with mlflow.start_run(run_name="train") as run, ultralytics_view(dataset) as data_yaml:
        mlflow.log_params({**config.model_dump(), "device": device})
        mlflow.set_tags({**lineage, "git_commit": git_commit(), "step": "train"})
        model = YOLO(config.model, task="detect")

        def log_epoch(trainer) -> None:
            values = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **(trainer.metrics or {})}
            mlflow.log_metrics({metric_key(k): float(v) for k, v in values.items()}, step=trainer.epoch)

        model.add_callback("on_fit_epoch_end", log_epoch)
        model.train(data=str(data_yaml), epochs=config.epochs, imgsz=config.imgsz, batch=config.batch,
                    device=device, workers=config.workers, seed=config.seed, lr0=config.lr0,
                    patience=config.patience, cache="ram" if config.cache else False, project=str(out.resolve()),
                    name="ultralytics", exist_ok=True, plots=False, verbose=False, amp=device != "cpu",
                    deterministic=True)
        run_dir = Path(model.trainer.save_dir)
        weights = out / "weights" / "best.pt"
        weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model.trainer.best, weights)
        final = {metric_key(k): float(v) for k, v in (model.trainer.metrics or {}).items()}
        mlflow.log_metrics({f"final/{k}": v for k, v in final.items()})
        mlflow.log_artifact(str(weights), artifact_path="model")
        if (run_dir / "results.csv").exists():
            mlflow.log_artifact(str(run_dir / "results.csv"), artifact_path="training")
        run_info = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                    "tracking_uri": tracking_uri(), "model_artifact": "model/best.pt",
                    **lineage, "imgsz": config.imgsz}
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    metrics = {"epochs": config.epochs, "device": device, "seconds": timer.seconds(), **final,
               "run_id": run_info["run_id"], **lineage}
    write_metrics(out / "metrics.json", metrics)
    return metrics

"""`train.task: anomaly`: fit a patch memory on the defect-free training images only.

Defect images in the train split are left out (they would teach the memory that defects are normal); val
and test keep theirs, so evaluate tunes the recall-first threshold and the gate reads the same metrics as
for a detector. The features come from `train.weights` (a local .pt or the champion), else the named ImageNet
backbone (`train.backbone`, efficientnet_lite0 by default: see defectops/backbones.py), else `train.model`'s yaml
with random weights (weak: near chance on real tiles).
"""

from __future__ import annotations

from pathlib import Path

from defectops.anomaly import memory as anomaly
from defectops.anomaly import training_images
from defectops.components.train.record import write_run_record
from defectops.lineage import git_commit
from defectops.metrics import StepTimer, write_metrics
from defectops.pretrained import ImageNetBackbone
from defectops.tracking import configure_mlflow

# The ImageNet backbone's stride-8, 16 and 32 maps (timm feature levels): small pits, textures, larger
# structures; each patch then projected onto 64 principal directions of the good patches (`memory_dims`).
# Measured on the magnetic tiles (bench/anomaly_variants.py, seed 0, chosen on val): stride 8+16 alone, 152
# values: val / test AUROC 0.902 / 0.829; + stride 32, 472 values: 0.938 / 0.860 but a third of the serving rate;
# + stride 32 projected to 64 values: 0.945 / 0.891 at less than stride 8+16's search cost. Stride 4 (0.699) and
# an elongated tile's kept aspect (0.820) lost outright; blurring the anomaly map loses the thin cracks.
FEATURE_LEVELS = (2, 3, 4)


def good_training_images(dataset: Path) -> list[Path]:
    return [dataset / p for p in training_images(dataset, defective=False)]


def backbone(start, config, source: str):
    """The features that are remembered: the starting checkpoint's (an earlier anomaly model's own, e.g. a
    retraining from an anomaly champion, or a YOLO checkpoint's first blocks), else the named ImageNet backbone
    (`train.backbone`, the default), else the yaml's network with random weights."""
    from ultralytics import YOLO

    if start.path is None:
        if config.backbone:
            return ImageNetBackbone.of(config.backbone, FEATURE_LEVELS)
        return anomaly.backbone_layers(YOLO(config.model).model, source)
    earlier = anomaly.load(start.path)
    if earlier is not None:  # keep the features it was fitted on (a memory from before extractors: its YOLO blocks)
        memory = earlier["memory"]
        return memory.extractor if hasattr(memory, "extractor") else anomaly.YoloFeatures(memory.layers)
    return anomaly.backbone_layers(YOLO(str(start.path)).model, source)


def fit_anomaly(config, dataset: Path, out: Path, lineage: dict, start, imgsz: int, timer: StepTimer,
                parent_run_id: str | None = None) -> dict:
    import mlflow
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # random backbone weights: same settings and data, same model
    source = (str(start.path) if start.path else config.backbone if config.backbone
              else f"{config.model} (random weights)")
    memory, report = anomaly.fit(backbone(start, config, source), good_training_images(dataset), imgsz,
                                 config.memory_patches, config.seed, dims=config.memory_dims)
    weights = out / "weights" / "best.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    anomaly.save(memory, weights, imgsz, source, report)
    configure_mlflow(config.experiment)
    with mlflow.start_run(run_name="train", nested=parent_run_id is not None, parent_run_id=parent_run_id) as run:
        mlflow.log_params({"task": config.task, "model": config.model, "weights": config.weights,
                           "backbone": config.backbone, "imgsz_used": imgsz, "memory_patches": config.memory_patches,
                           "memory_dims": config.memory_dims, "seed": config.seed})
        mlflow.set_tags({**lineage, "git_commit": git_commit(), "step": "train", "initialised_from": start.note[:500]})
        mlflow.log_metrics({f"fit/{k}": float(v) for k, v in report.__dict__.items()})
        mlflow.log_artifact(str(weights), artifact_path="model")
        run_info = write_run_record(out, run, lineage, dataset, config.task, imgsz, None, None, resumed=False)
    metrics = {"task": config.task, "epochs": 0, "imgsz": imgsz, "tile": None, "backbone": source,
               **report.__dict__, "seconds": timer.seconds(), "run_id": run_info["run_id"], "resumed": False,
               **lineage}
    write_metrics(out / "metrics.json", metrics)
    return metrics

"""Train: Ultralytics YOLO from a model yaml, on a named ImageNet-pretrained backbone, or from a checkpoint;
tracked in MLflow."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from defectops.backbones import DEFAULT as BACKBONE
from defectops.backbones import describe as backbone_lineage
from defectops.backbones import parse as parse_backbone
from defectops.components.train import weights as starting
from defectops.components.train.record import write_run_record
from defectops.compute import cpu_workers, keep_workers
from defectops.config import StepConfig
from defectops.dataset import build_classification_view, build_ultralytics_view, read_names
from defectops.dataset_profile import choose_size
from defectops.environment import override
from defectops.lineage import dvc_dir_md5, git_commit
from defectops.metrics import StepTimer, write_metrics
from defectops.offline import configure_ultralytics
from defectops.tracking import configure_mlflow, metric_key

if TYPE_CHECKING:
    from defectops.registries import Registry

DEFAULT_MODELS = {"detect": "yolov8n.yaml", "classify": "yolov8n-cls.yaml", "segment": "yolov8n-seg.yaml",
                  "anomaly": "yolov8n.yaml"}
# The tasks whose default model starts from ImageNet features (defectops/backbones.py).
DEFAULT_BACKBONES = {"classify": BACKBONE, "anomaly": BACKBONE}
YAML_SUFFIX = {"classify": "-cls", "segment": "-seg"}  # Ultralytics' naming of a task's model yamls
DEFAULT_LR0 = {"AdamW": 0.001, "Adam": 0.001, "SGD": 0.01, "MuSGD": 0.01}  # auto picks its own


class TrainConfig(StepConfig):
    task: Literal["detect", "classify", "segment", "anomaly"] = Field(
        "detect", description="detect: boxes per defect (YOLO detect); classify: one class per image, 'good' for "
                              "defect-free ones (YOLO classify); segment: a pixel outline per defect from the "
                              "dataset's masks (YOLO-seg; area for severity rules); anomaly: no defect labels "
                              "needed, a memory of defect-free training patches over a YOLO backbone (weights: its "
                              "features).")
    model: str = Field(None, description="Ultralytics model yaml, built from scratch and never downloaded; "
                                                "null = yolov8n.yaml (detect, anomaly), yolov8n-cls.yaml "
                                                "(classify), yolov8n-seg.yaml (segment).")
    backbone: str | None = Field(
        "auto", description="A named ImageNet-pretrained backbone whose weights an installed package ships "
                            "(defectops/backbones.py: efficientnet_lite0 (installed), _lite1, _lite2; ':random' = "
                            "the same network from random weights); auto: efficientnet_lite0 for classify and "
                            "anomaly, the model yaml for detect and segment (a backbone there is YOLOv8n's neck "
                            "and head on it); null: the model yaml from scratch.")
    weights: str | None = Field(None, description="Start from these weights instead of random ones: a local .pt "
                                                  "(a pretrained checkpoint, any earlier defectops model; its "
                                                  "architecture wins over `model`) or 'champion' (the registry's "
                                                  "serving model). Class outputs restart when the classes differ.")
    model_name: str = Field("defectops-detector", description="Registered model whose champion 'champion' means.")
    epochs: int = Field(20, ge=1)
    time_hours: float | None = Field(None, gt=0, description="Wall-clock budget; when set, Ultralytics fits the "
                                                             "epoch count (and LR schedule) to it after epoch 1.")
    imgsz: int | Literal["auto"] = Field(
        "auto", description="Training (and serving) image size, a multiple of 32; auto: from the training boxes' "
                            "sizes (the median defect >= 16 px, capped by max_imgsz; see `defectops data profile`).")
    max_imgsz: int = Field(640, ge=32, multiple_of=32, description="imgsz: auto never goes above this (compute "
                                                                   "budget); beyond it, tile: auto tiles.")
    tile: int | Literal["auto"] | None = Field(
        "auto", description="Tile side in source pixels for large images with small defects (training, evaluation "
                            "and the endpoint all tile); auto: only when imgsz auto would need more than max_imgsz; "
                            "null: never.")
    tile_overlap: float = Field(0.25, ge=0, lt=0.9, description="Share of a tile its neighbour also covers.")
    batch: int = Field(16, ge=1)
    device: str = Field("cpu", description="'cpu', a CUDA index like '0', or 'auto'.")
    workers: int = Field(2, ge=0, description="Dataloader worker processes; on CPU at most the cores torch "
                                              "leaves free (see threads).")
    threads: int | None = Field(None, ge=1, description="torch threads on CPU; null = every core this process "
                                                        "may use (Ultralytics alone leaves one idle).")
    seed: int = 0
    memory_patches: int = Field(8000, ge=16, description="anomaly: good patches remembered (a greedy coreset); "
                                                         "more = fewer false rejects on rare normal looks, slower.")
    memory_dims: int | None = Field(64, ge=2, description="anomaly: values per patch, its features projected onto "
                                                          "the good patches' principal directions (null: all); the "
                                                          "memory search, the serving cost, scales with it.")
    optimizer: Literal["AdamW", "Adam", "SGD", "MuSGD", "auto"] = Field(
        "AdamW", description="Named, not Ultralytics' 'auto': auto ignores lr0 and switches to MuSGD past 10,000 "
                             "planned iterations (a wall-clock budget with many epochs), ~6x slower per batch on CPU.")
    lr0: float | None = Field(None, gt=0, description="Initial learning rate; null: 0.001 for the Adam family, "
                                                      "0.01 for SGD/MuSGD (what each is usually started at).")
    weight_decay: float = Field(0.0005, ge=0)
    mosaic: float = Field(1.0, ge=0, le=1, description="Probability of mosaic augmentation.")
    hsv_v: float = Field(0.4, ge=0, le=1, description="Brightness augmentation strength.")
    patience: int = Field(100, ge=1)
    cache: bool = Field(True, description="Cache decoded images in RAM (small datasets).")
    experiment: str = "defectops"
    checkpoint_dir: Path = Field(Path("models/checkpoints"), description="Survives the process (on spot: a mounted "
                                                                          "volume or synced to S3); not a DVC output.")
    resume: bool = Field(True, description="Resume an interrupted run with the same settings and data.")

    @model_validator(mode="before")
    @classmethod
    def _default_model_for_task(cls, data):
        if isinstance(data, dict) and data.get("model") is None:
            data = {**data, "model": DEFAULT_MODELS.get(data.get("task", "detect"), DEFAULT_MODELS["detect"])}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_backbone_for_task(cls, data):
        if isinstance(data, dict) and data.get("backbone", "auto") == "auto":
            data = {**data, "backbone": DEFAULT_BACKBONES.get(data.get("task", "detect"))}
        return data

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value):
        if value is not None:
            parse_backbone(value)  # a BackboneError (a ValueError) names the choices
        return value

    @model_validator(mode="before")
    @classmethod
    def _learning_rate_for_optimizer(cls, data):
        if isinstance(data, dict) and data.get("lr0") is None:
            data = {**data, "lr0": DEFAULT_LR0.get(data.get("optimizer", "AdamW"), 0.01)}
        return data

    @field_validator("imgsz")
    @classmethod
    def _imgsz(cls, value):
        if isinstance(value, int) and (value < 32 or value % 32):
            raise ValueError(f"{value}: expected 'auto' or a multiple of 32 (the model's largest stride)")
        return value

    @field_validator("tile")
    @classmethod
    def _tile(cls, value):
        if isinstance(value, int) and value < 32:
            raise ValueError(f"{value}: expected 'auto', null or at least 32 source pixels")
        return value

    @model_validator(mode="after")
    def _model_fits_task(self):
        if self.task == "anomaly" or not self.model.endswith((".yaml", ".yml")):
            return self
        stem = Path(self.model).stem
        fits = stem.endswith(YAML_SUFFIX[self.task]) if self.task in YAML_SUFFIX else not stem.endswith(
            tuple(YAML_SUFFIX.values()))
        if not fits:
            raise ValueError(f"model '{self.model}' does not fit task '{self.task}': classification model yamls "
                             f"end in '-cls' (e.g. {DEFAULT_MODELS['classify']}), segmentation ones in '-seg' "
                             f"(e.g. {DEFAULT_MODELS['segment']}), detection ones in neither "
                             f"(e.g. {DEFAULT_MODELS['detect']})")
        return self


WARM_START_ENV = "DEFECTOPS_WARM_START"  # set by a drift retraining launcher (monitor.retrain.warm_start)
WARM_START_SHARE_ENV = "DEFECTOPS_WARM_START_EPOCH_SHARE"


def for_this_run(config: TrainConfig) -> TrainConfig:
    """A drift retraining starts from the champion with a share of the epochs, unless train.weights already
    says where to start; the launcher says so through the environment, so params.yaml stays as it is."""
    if not os.environ.get(WARM_START_ENV) or config.weights:
        return config
    warm = override(WARM_START_ENV, "train.weights", config.weights)
    share = float(override(WARM_START_SHARE_ENV, "train.epochs (share)", 1.0))
    return config.model_copy(update={"weights": warm, "epochs": max(1, round(config.epochs * share))})


WARM_START_WARMUP_SHARE = 0.1  # of the epochs; Ultralytics' 3 warm-up epochs are a random start's need


def optimizer_args(config: TrainConfig, warm_start: bool = False) -> dict:
    """Ultralytics' optimizer settings for this config. Adam-family steps are already normalised, so the
    bias warm-up starts at zero instead of SGD's 0.1 (which would be 100x their learning rate). Trained
    weights need no 3-epoch ramp: a drift retraining of 7 epochs would spend 3 of them below full rate."""
    args = {"optimizer": config.optimizer, "lr0": config.lr0}
    if config.optimizer in ("AdamW", "Adam"):
        args["warmup_bias_lr"] = 0.0
    if warm_start:
        args["warmup_epochs"] = min(3.0, WARM_START_WARMUP_SHARE * config.epochs)
    return args


def task_augmentation(task: str) -> dict:
    """A classifier's label is about the whole part: Ultralytics' random erasing (40 % of images) and crops down
    to half the image would cut the very defect that makes an image 'defective' away. Crops keep >= 90 %."""
    return {"erasing": 0.0, "scale": 0.1} if task == "classify" else {}


def resolve_size(config: TrainConfig, dataset: Path) -> dict:
    """The image size (and tile size) this run trains at: fixed in the config, or chosen from the data."""
    if config.task in ("classify", "anomaly", "segment"):
        # The whole image: tiling would change what a label means (a class, a good part), or cut outlines.
        size = choose_size(dataset, config.max_imgsz, tile=False) if config.imgsz == "auto" else {}
        return {"imgsz": size.get("imgsz", config.imgsz), "tile": None, "reason": size.get("reason", "fixed")}
    if isinstance(config.tile, int):
        imgsz = config.imgsz if config.imgsz != "auto" else min(int(np.ceil(config.tile / 32) * 32), config.max_imgsz)
        return {"imgsz": imgsz, "tile": config.tile, "reason": f"tiles of {config.tile} px (fixed)"}
    if config.imgsz != "auto":
        return {"imgsz": config.imgsz, "tile": None, "reason": "fixed"}
    return choose_size(dataset, config.max_imgsz, tile=config.tile == "auto")


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


def _atomic_copy(source: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _epochs_and_seconds(results_csv: Path) -> tuple[int, float]:
    """Epochs run (with a time budget Ultralytics decides how many) and the loop's seconds
    (Ultralytics' cumulative 'time' column: training plus per-epoch validation)."""
    import csv

    if not results_csv.exists():
        return 0, 0.0
    with open(results_csv, newline="") as fh:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    return len(rows), float(rows[-1].get("time") or 0.0) if rows else 0.0


def run_key(config: TrainConfig, lineage: dict[str, str]) -> str:
    """Identity of a training run: same settings on the same data = same run, so it may resume."""
    settings = config.model_dump(mode="json", exclude={"checkpoint_dir", "resume", "experiment", "threads", "workers"})
    blob = json.dumps({"settings": settings, "data": lineage["train_data_md5"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train(config: TrainConfig, dataset: Path, out: Path, parent_run_id: str | None = None,
          on_epoch: Callable[[int, float], bool] | None = None, registry: Registry | None = None) -> dict:
    """Train on the canonical dataset at `dataset`; write weights and run info under `out`.

    Spot-safe: Ultralytics writes last.pt every epoch into the run's checkpoint folder; started
    again after an interruption with the same settings and data, training resumes from it and
    keeps logging into the same MLflow run. `registry` is where `weights: champion` is looked up.
    """
    import mlflow

    threads = configure_ultralytics(config.threads)
    from ultralytics import YOLO

    from defectops.components.train.backbone_models import frozen_layers, write_model_yaml
    from defectops.pretrained import ultralytics_layers

    timer = StepTimer()
    config = for_this_run(config)
    dataset, out = Path(dataset), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    lineage = dataset_lineage(dataset)
    configure_mlflow(config.experiment)
    device = _resolve_device(config.device)
    # An engine may mount durable storage for checkpoints (a Kubeflow PVC) and say so here.
    checkpoint_root = Path(override("DEFECTOPS_CHECKPOINT_DIR", "train.checkpoint_dir", config.checkpoint_dir))
    checkpoint = (checkpoint_root / run_key(config, lineage)).resolve()
    # Ultralytics writes last.pt in place: a kill mid-write leaves it truncated. After every save we
    # copy it atomically to resume.pt, which is therefore always a whole checkpoint.
    last, best_copy = checkpoint / "resume.pt", checkpoint / "best.pt"
    run_id_file = checkpoint / "mlflow_run_id"
    resuming = config.resume and last.exists() and run_id_file.exists()
    if resuming:  # put whole copies back where Ultralytics reads them (a kill may have cut them short)
        weights_dir = checkpoint / "ultralytics" / "weights"
        _atomic_copy(last, weights_dir / "last.pt")
        if best_copy.exists():
            _atomic_copy(best_copy, weights_dir / "best.pt")
    if not resuming and checkpoint.exists():
        shutil.rmtree(checkpoint)
    checkpoint.mkdir(parents=True, exist_ok=True)
    start_record = checkpoint / "start.json"  # a resumed run keeps the lineage of where it started
    if resuming and start_record.exists():
        start = starting.StartingPoint(None, json.loads(start_record.read_text()), "resumed")
    else:
        start = starting.resolve(config.weights, config.model_name, checkpoint, registry)
        if config.backbone and start.path is None:  # which pretrained weights it starts from
            start.lineage.update(backbone_lineage(config.backbone))
        start_record.write_text(json.dumps(start.lineage))
    lineage = {**lineage, **start.lineage}
    ultralytics_layers()  # a checkpoint or yaml naming ImageNetBackbone can be (re)built
    size = resolve_size(config, dataset)
    imgsz, tile = int(size["imgsz"]), size["tile"]
    if config.task == "anomaly":
        from defectops.components.train.anomaly import fit_anomaly

        try:  # a fit takes minutes and has nothing to resume
            return fit_anomaly(config, dataset, out, lineage, start, imgsz, timer, parent_run_id)
        finally:
            shutil.rmtree(checkpoint, ignore_errors=True)
    if config.task == "classify":
        data = build_classification_view(dataset, checkpoint / "view", size=imgsz)
    else:
        data = build_ultralytics_view(dataset, checkpoint / "view", segments=config.task == "segment",
                                      tiles=(tile, config.tile_overlap, config.seed) if tile else None)

    with mlflow.start_run(run_id=run_id_file.read_text().strip() if resuming else None, run_name="train",
                          nested=parent_run_id is not None, parent_run_id=parent_run_id) as run:
        run_id_file.write_text(run.info.run_id)
        if not resuming:
            mlflow.log_params({**config.model_dump(exclude={"checkpoint_dir"}), "device": device,
                               "imgsz_used": imgsz, "tile_used": tile})
            mlflow.set_tag("size_reason", size["reason"][:500])
            mlflow.set_tags({**lineage, "git_commit": git_commit(), "step": "train"})
            for record in ("augment_metrics.json", "augment_log.csv"):  # how the training set was made
                if (dataset / record).exists():
                    mlflow.log_artifact(str(dataset / record), artifact_path="data")
        else:
            mlflow.set_tag("resumed_from", str(last))
        if resuming:
            model = YOLO(str(last), task=config.task)
        elif start.path is not None:
            model = starting.load(start, config.task, read_names(dataset))
        elif config.backbone:
            model = YOLO(str(write_model_yaml(config.backbone, config.task, checkpoint)), task=config.task)
        else:
            model = YOLO(config.model, task=config.task)
        mlflow.set_tag("initialised_from", start.note[:500] if not resuming else "resumed")

        def log_epoch(trainer) -> None:
            values = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **(trainer.metrics or {})}
            mlflow.log_metrics({metric_key(k): float(v) for k, v in values.items()}, step=trainer.epoch)
            if on_epoch is not None and on_epoch(trainer.epoch, float(trainer.fitness or 0.0)):
                trainer.stop = True  # e.g. an HPO pruner gave up on this trial
        def keep_whole_checkpoint(trainer) -> None:
            _atomic_copy(Path(trainer.last), last)
            if trainer.best_fitness == trainer.fitness:  # best.pt was rewritten in this save too
                _atomic_copy(Path(trainer.best), best_copy)

        frozen = frozen_layers(model.model)  # a pretrained backbone's early stages stay ImageNet's
        mlflow.set_tag("frozen_layers", ",".join(frozen) or "none")
        model.add_callback("on_fit_epoch_end", log_epoch)
        model.add_callback("on_model_save", keep_whole_checkpoint)
        model.add_callback("on_pretrain_routine_start", keep_workers(cpu_workers(config.workers, threads)))
        if resuming:
            model.train(resume=True, device=device, workers=config.workers)
        else:
            model.train(data=str(data), epochs=config.epochs, imgsz=imgsz, batch=config.batch,
                        device=device, workers=config.workers, seed=config.seed,
                        **optimizer_args(config, warm_start=start.path is not None),
                        weight_decay=config.weight_decay, mosaic=config.mosaic, hsv_v=config.hsv_v,
                        patience=config.patience, time=config.time_hours, cache="ram" if config.cache else False,
                        project=str(checkpoint), name="ultralytics", exist_ok=True, plots=False, verbose=False,
                        amp=device != "cpu", deterministic=True, freeze=frozen or None,
                        **task_augmentation(config.task))
        run_dir = Path(model.trainer.save_dir)
        weights = out / "weights" / "best.pt"
        weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model.trainer.best, weights)
        if (run_dir / "results.csv").exists():
            shutil.copyfile(run_dir / "results.csv", out / "results.csv")
            mlflow.log_artifact(str(out / "results.csv"), artifact_path="training")
        final = {metric_key(k): float(v) for k, v in (model.trainer.metrics or {}).items()}
        used = model.trainer.optimizer  # what Ultralytics built, recorded because 'auto' would pick for itself
        optimizer_used = {"optimizer": type(used).__name__,  # MuSGD boosts some groups' rate: the base is the least
                          "lr0": min(float(g.get("initial_lr", g["lr"])) for g in used.param_groups)}
        mlflow.set_tags({"optimizer_used": optimizer_used["optimizer"], "lr0_used": optimizer_used["lr0"]})
        mlflow.log_metrics({f"final/{k}": v for k, v in final.items()})
        mlflow.log_artifact(str(weights), artifact_path="model")
        run_info = write_run_record(out, run, lineage, dataset, config.task, imgsz, tile,
                                    config.tile_overlap if tile else None, resuming)
    shutil.rmtree(checkpoint, ignore_errors=True)  # finished: the next run with these settings starts fresh
    epochs_run, loop_seconds = _epochs_and_seconds(out / "results.csv")
    metrics = {"task": config.task, "epochs": epochs_run or config.epochs, "device": device, "imgsz": imgsz,
               "tile": tile, "size_reason": size["reason"],
               "seconds_per_epoch": round(loop_seconds / epochs_run, 3) if epochs_run else None,
               "optimizer": optimizer_used["optimizer"], "lr0": optimizer_used["lr0"],
               "seconds": timer.seconds(), **final, "run_id": run_info["run_id"], "resumed": resuming, **lineage}
    write_metrics(out / "metrics.json", metrics)
    return metrics

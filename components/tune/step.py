"""Tune: Optuna search over training settings, scored the recall-first way.

Objective: validation precision at the threshold that keeps the target recall (what the line
gets), not mAP; ties (say, two trials both perfect on val) go to the wider gap between that
threshold and the best-scoring defect-free image, i.e. the more robust operating point. TPE
proposes settings; the median pruner stops trials whose per-epoch fitness trails the others once
half the epochs are done (earlier, a slow starter is not yet a loser). Trial 0 is the current
defaults, so "better than the defaults" is measured in the same study. Every trial is an MLflow
child run. The search space is declarative (params.yaml), so the cloud tuners (SageMaker
HyperparameterTuner ranges, Katib) read the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import Field, model_validator

from defectops.components.evaluate.scoring import load_model, score_images
from defectops.components.evaluate.threshold import image_level_metrics, tune_threshold
from defectops.components.train.step import TrainConfig, train
from defectops.components.train.weights import champion_registry
from defectops.config import StepConfig
from defectops.dataset import label_path, read_labels, read_manifest, read_names
from defectops.metrics import StepTimer, write_metrics
from defectops.tiling import tiling_of
from defectops.tracking import configure_mlflow

if TYPE_CHECKING:
    from defectops.registries import Registry


class SearchRange(StepConfig):
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical range needs 'choices'")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError("a numeric range needs low < high")
        return self


class TuneConfig(StepConfig):
    trials: int = Field(4, ge=1, description="Trials including the defaults (trial 0).")
    epochs_per_trial: int | None = Field(None, ge=1, description="Default: train.epochs.")
    target_recall: float = Field(0.98, gt=0, le=1, description="Recall the objective's threshold keeps on val.")
    seed: int = 0
    space: dict[str, SearchRange] = {
        "lr0": SearchRange(type="float", low=0.0003, high=0.005, log=True),  # AdamW (train.optimizer)
        "mosaic": SearchRange(type="float", low=0.0, high=1.0),
        "hsv_v": SearchRange(type="float", low=0.1, high=0.6),
    }

    @model_validator(mode="after")
    def _known_settings(self):
        unknown = sorted(set(self.space) - set(TrainConfig.model_fields))
        if unknown:
            raise ValueError(f"space keys {unknown} are not train settings ({sorted(TrainConfig.model_fields)})")
        return self


def suggest(trial, space: dict[str, SearchRange]) -> dict:
    """One point of the declarative search space, drawn by an Optuna trial."""
    params = {}
    for name, r in space.items():
        if r.type == "categorical":
            params[name] = trial.suggest_categorical(name, r.choices)
        elif r.type == "int":
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


def plan_trials(config: TuneConfig, train_config: TrainConfig) -> list[dict]:
    """Settings for trials that run side by side (Kubeflow ParallelFor), decided up front.

    Trial 0 is the current settings; the rest are quasi-random (scrambled Sobol) points, which
    cover the space evenly when no trial can learn from another.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.QMCSampler(seed=config.seed))
    study.enqueue_trial({name: getattr(train_config, name) for name in config.space})
    return [suggest(study.ask(), config.space) for _ in range(config.trials)]


def read_configs(params: Path) -> tuple[TuneConfig, TrainConfig]:
    """The tune and train sections of a params file, validated (errors name the file and field)."""
    from defectops.config import load_step_config

    return load_step_config(TuneConfig, "tune", params), load_step_config(TrainConfig, "train", params)


def plan_from_params(params: Path) -> list[dict]:
    """Every trial's settings for tuners that fan out (a KFP ParallelFor): what `plan_trials` plans from
    a params file. Engines call this (and the two below); none builds a config itself."""
    return plan_trials(*read_configs(params))


def trial_from_params(params: Path, dataset: Path, out: Path, settings: dict) -> dict:
    """One trial of a fanned-out study, configured from a params file (see `run_trial`)."""
    config, train_config = read_configs(params)
    return run_trial(config, train_config, dataset, out, settings,
                     champion_registry(params, train_config.weights, train_config.model_name))


def run_trial(config: TuneConfig, train_config: TrainConfig, dataset: Path, out: Path, settings: dict,
              registry: Registry | None = None) -> dict:
    """Train one trial for `epochs_per_trial` and score it with the recall-first objective (`registry`: where
    a trial starting from the champion finds it)."""
    trial_config = TrainConfig.model_validate({
        **train_config.model_dump(), **settings, "epochs": config.epochs_per_trial or train_config.epochs,
        "checkpoint_dir": Path(out) / "checkpoints"})
    train(trial_config, Path(dataset), Path(out), registry=registry)
    result = objective_value(Path(out), Path(dataset), config.target_recall, trial_config.device)
    return {"settings": settings, "objective": result["objective"], "recall": result["recall"],
            "threshold": result["threshold"]}


def select_best(results: list[dict]) -> dict:
    """The settings of the best trial; on a tie the earlier one (trial 0 = the defaults) wins."""
    if not results:
        raise ValueError("no trial results to choose from")
    best = max(enumerate(results), key=lambda item: (item[1]["objective"], -item[0]))[1]
    return dict(best["settings"])


TIE_BREAK_WEIGHT = 0.01  # a precision step on val is >= 1/n_good images (~0.05): the gap only orders ties


def recall_first_objective(scores, truth, target_recall: float) -> dict:
    """Precision at the highest threshold keeping `target_recall`, plus TIE_BREAK_WEIGHT x the gap
    between that threshold and the best-scoring defect-free image (negative when one is above it)."""
    import numpy as np

    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=bool)
    threshold = tune_threshold(scores, truth, target_recall)
    metrics = image_level_metrics(scores, truth, threshold)
    gap = threshold - float(scores[~truth].max()) if (~truth).any() else 0.0
    return {"threshold": threshold, "gap": gap, "objective": metrics["precision"] + TIE_BREAK_WEIGHT * gap, **metrics}


def objective_value(model_dir: Path, dataset: Path, target_recall: float, device: str) -> dict:
    """The recall-first objective of a trained model on the validation split."""
    import json

    import numpy as np

    paths = [r["path"] for r in read_manifest(dataset) if r["split"] == "val"]
    truth = np.array([bool(read_labels(label_path(dataset, p))) for p in paths])
    run = json.loads((model_dir / "run.json").read_text())
    _, scores = score_images(load_model(model_dir / "weights" / "best.pt"), dataset, paths, run["imgsz"], 16, device,
                             read_names(dataset), tiling_of(run))
    return recall_first_objective(scores, truth, target_recall)


def tune(config: TuneConfig, train_config: TrainConfig, dataset: Path, out: Path,
         registry: Registry | None = None) -> dict:
    """Optuna over `config.space`; `registry` is where trials starting from the champion find it."""
    import mlflow
    import optuna

    timer = StepTimer()
    dataset, out = Path(dataset), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed),
                                pruner=optuna.pruners.MedianPruner(
                                    n_startup_trials=2,
                                    n_warmup_steps=max(1, (config.epochs_per_trial or train_config.epochs) // 2)))
    study.enqueue_trial({name: getattr(train_config, name) for name in config.space})
    base = train_config.model_copy(update={"epochs": config.epochs_per_trial or train_config.epochs,
                                           "checkpoint_dir": out / "checkpoints"})
    configure_mlflow(train_config.experiment)

    with mlflow.start_run(run_name="tune") as parent:
        mlflow.log_params({"trials": config.trials, "target_recall": config.target_recall,
                           "epochs_per_trial": base.epochs})

        def objective(trial: optuna.Trial) -> float:
            params = suggest(trial, config.space)
            pruned = False

            def report(epoch: int, fitness: float) -> bool:
                nonlocal pruned
                if pruned or epoch >= base.epochs:  # after the last epoch: Ultralytics' final eval
                    return pruned
                trial.report(fitness, epoch)
                pruned = trial.should_prune()
                return pruned

            trial_dir = out / f"trial_{trial.number}"
            train(TrainConfig.model_validate({**base.model_dump(), **params}), dataset, trial_dir,
                  parent_run_id=parent.info.run_id, on_epoch=report, registry=registry)
            if pruned:
                raise optuna.TrialPruned()
            result = objective_value(trial_dir, dataset, config.target_recall, base.device)
            for key in ("threshold", "recall", "precision", "gap"):
                trial.set_user_attr(key, result[key])
            return result["objective"]

        study.optimize(objective, n_trials=config.trials)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.value)
        default = study.trials[0]
        mlflow.log_metrics({"best_objective": best.value,
                            "default_objective": default.value if default.value is not None else float("nan")})

    best_params = {"train": {k: v for k, v in best.params.items()}}
    (out / "best_params.yaml").write_text(yaml.safe_dump(best_params, sort_keys=True))
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    for trial in study.trials:  # the trials' weights are not needed once the study is decided
        shutil.rmtree(out / f"trial_{trial.number}" / "weights", ignore_errors=True)
    metrics = {"trials": len(study.trials), "completed": len(complete),
               "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
               "default_objective": default.value, "best_objective": best.value, "best_trial": best.number,
               "best_params": best.params, "beats_defaults": best.number != 0 and best.value > (default.value or 0),
               "objective": f"val precision at recall >= {config.target_recall} (+ {TIE_BREAK_WEIGHT} x gap to the "
                            "best-scoring defect-free image, for ties)", "parent_run_id": parent.info.run_id,
               "seconds": timer.seconds()}
    write_metrics(out / "metrics.json", metrics)
    return metrics

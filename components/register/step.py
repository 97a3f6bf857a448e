"""Register: put the evaluated model in the registry as *pending approval* (never approved here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field

from defectops import identity
from defectops.backbones import LINEAGE_KEYS as BACKBONE_LINEAGE
from defectops.config import StepConfig
from defectops.dataset import sha256_file
from defectops.environment import override
from defectops.errors import RefusedError
from defectops.lineage import git_commit
from defectops.metrics import StepTimer, write_metrics
from defectops.registries import Registry, open_registry


class RegisterConfig(StepConfig):
    model_name: str = Field("defectops-detector", min_length=1)
    trigger: str = Field("manual", description="Why this run happened: manual, schedule, drift, disagreement.")
    submitted_by: str | None = Field(None, description="The person who started the run; set by 'submit' for "
                                                       "remote engines. Default: $DEFECTOPS_USER or the login name.")
    submitted_via: str = Field("dvc", description="The engine that ran it; recorded as its service identity.")
    model_uri: str | None = Field(None, description="Where the registry points for the model. Default: the "
                                                    "training run's model in MLflow. An engine whose store is "
                                                    "elsewhere sets it (SageMaker: the training job's model.tar.gz).")
    evaluation_uri: str | None = Field(None, description="Where the evaluation folder lives for a registry that "
                                                         "links to it (SageMaker's ModelMetrics); MLflow keeps it "
                                                         "with the run.")


def register(config: RegisterConfig, model_dir: Path, eval_dir: Path, out: Path,
             registry: Registry | None = None) -> dict:
    """`registry`: where to register (the CLI opens the one params.yaml names); default MLflow's."""
    timer = StepTimer()
    model_dir, eval_dir, out = Path(model_dir), Path(eval_dir), Path(out)
    run_info = json.loads((model_dir / "run.json").read_text())
    evaluation = json.loads((eval_dir / "metrics.json").read_text())
    gate = evaluation.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        # No verdict is not a pass: an evaluation from elsewhere (or edited by hand) must not open the registry.
        raise RefusedError(f"{eval_dir / 'metrics.json'}: no champion/challenger gate verdict ('gate.passed'); "
                           "expected the evaluate step's report - run 'defectops evaluate' on this model first")
    trigger = override("DEFECTOPS_TRIGGER", "register.trigger", config.trigger)
    registry = registry or open_registry(config.model_name)
    if trigger in RETRAINING_TRIGGERS:
        same = _same_data_as_champion(registry, run_info)
        if same:
            # Retrained on the data the champion saw: the same model again. The alert that started it is left
            # open (its trigger file says why) until feedback, new data, changes what a retraining can learn.
            result = {"registered": False, "model_name": config.model_name, "run_id": run_info["run_id"],
                      "reason": f"same data as champion v{same.version} (dataset {run_info['dataset_md5']}); add "
                                "feedback ('defectops feedback export', ingest.extra_sources) or new data",
                      "trigger": trigger, "trigger_open": _leave_trigger_open(same.version), "seconds": timer.seconds()}
            write_metrics(out / "registration.json", result)
            return result
    if not gate["passed"]:
        # The run ends here, clearly: a model worse than production is never put in front of an approver.
        result = {"registered": False, "model_name": config.model_name,
                  "reason": f"not better than champion v{gate['champion_version']}: {gate['reason']}",
                  "run_id": run_info["run_id"], "seconds": timer.seconds()}
        write_metrics(out / "registration.json", result)
        return result
    feedback = run_info.get("feedback") or {}
    tags = {
        "dataset_md5": run_info["dataset_md5"],
        "train_data_md5": run_info.get("train_data_md5", run_info["dataset_md5"]),
        "git_commit": git_commit(),
        # Exact (repr round-trips): a threshold rounded up would drop the defects scored right at it,
        # at the endpoint and in the champion/challenger gate.
        "threshold": repr(float(evaluation["threshold"])),
        "target_recall": evaluation["target_recall"],
        "tuning_recall": evaluation.get("tuning_recall", evaluation["target_recall"]),
        "test_recall": f"{evaluation['test']['recall']:.4f}",
        "test_precision": f"{evaluation['test']['precision']:.4f}",
        # What the threshold's recall rests on; when too few defective images could show the target at all, the
        # approver reads that first (review page, `registry show`).
        **({"recall_lower_bound": f"{evaluation['val_recall_lower_bound']:.4f}"}
           if evaluation.get("val_recall_lower_bound") is not None else {}),
        **({"evidence_warning": evaluation["small_validation_warning"][:250]}
           if evaluation.get("small_validation_warning") else {}),
        "task": evaluation.get("task", "detect"),
        **{f"test_{k}": f"{evaluation[f'test_{k}']:.4f}" for k in ("map50", "accuracy")
           if evaluation.get(f"test_{k}") is not None},
        "imgsz": run_info["imgsz"],
        **({"tile": str(run_info["tile"]), "tile_overlap": str(run_info["tile_overlap"])} if run_info.get("tile")
           else {}),
        # Where training started (warm start): the parent version and the hash of the weights it began from.
        **{k: str(run_info[k]) for k in ("parent_version", "parent_model", "parent_weights_sha256")
           if run_info.get(k)},
        # Which pretrained weights it started from (package and pinned sha256): the model card shows them.
        **{k: str(run_info[k]) for k in BACKBONE_LINEAGE if run_info.get(k)},
        "weights_sha256": sha256_file(model_dir / "weights" / "best.pt"),
        # A retraining launcher says why it ran through the environment, so the same DVC stage
        # records 'drift' or 'schedule' without editing params.yaml.
        "trigger": trigger,
        **_trigger_facts(),
        # How many inspector-answered images it trained on, and whose answers: they may not approve it.
        "feedback_images": str(int(feedback.get("images", 0))),
        **({"feedback_labellers": ",".join(feedback["labellers"])} if feedback.get("labellers") else {}),
        "gate": (gate.get("reason") or "")[:250],
        "trigger_ref": os.environ.get("DEFECTOPS_TRIGGER_REF", ""),
        # The human stays the submitter (four-eyes compares approvers with them); the engine's account
        # is recorded beside, never instead.
        "submitted_by": identity.normalise(config.submitted_by) or identity.current_user(),
        "submitted_via": identity.service(config.submitted_via),
    }
    model_uri = config.model_uri or _mlflow_model_uri(run_info)
    version = registry.register_pending(model_uri, run_info["run_id"], tags, config.evaluation_uri)
    result = {"registered": True, "gate": gate.get("reason"), "model_name": version.name,
              "version": version.version, "run_id": version.run_id,
              "approval": version.tags["approval"], "aliases": version.aliases, "seconds": timer.seconds()}
    write_metrics(out / "registration.json", result)
    return result


RETRAINING_TRIGGERS = ("drift", "disagreement")  # automatic retrainings: a repeat of the champion is no challenger


def _same_data_as_champion(registry: Registry, run_info: dict):
    champion = registry.champion()
    return champion if champion and champion.tags.get("dataset_md5") == run_info["dataset_md5"] else None


def _trigger_record() -> tuple[Path | None, dict]:
    ref = os.environ.get("DEFECTOPS_TRIGGER_REF")
    if not ref or not Path(ref).is_file():
        return None, {}
    try:
        return Path(ref), json.loads(Path(ref).read_text())
    except (OSError, json.JSONDecodeError):
        return Path(ref), {}


def _trigger_facts() -> dict[str, str]:
    """What the alert that started this run measured (inspectors' disagreement rate), for the approver."""
    _, trigger = _trigger_record()
    return {k: f"{float(trigger[k]):.4f}" if k == "disagreement_rate" else str(trigger[k])
            for k in ("disagreement_rate", "disagreement_answers") if trigger.get(k) is not None}


def _leave_trigger_open(champion_version: str) -> str | None:
    """Mark the alert's record open, with why nothing was registered; returns its path."""
    path, trigger = _trigger_record()
    if path is None:
        return None
    trigger.update(status="open", outcome=f"retrained on the same data as champion v{champion_version}: not a new "
                                          "challenger; add feedback and retrain")
    path.write_text(json.dumps(trigger, indent=2) + "\n")
    return str(path)


def _mlflow_model_uri(run_info: dict) -> str:
    import mlflow

    mlflow.set_tracking_uri(run_info["tracking_uri"])
    return f"{mlflow.get_run(run_info['run_id']).info.artifact_uri}/model"

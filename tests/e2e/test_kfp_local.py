"""The same DAG on Kubeflow Pipelines' local runner: every component a real subprocess on this machine."""

import json

import mlflow
import pytest
import yaml

from .project import make_project, run_on_kfp

TINY = {
    "ingest": {"n_images": 40, "image_size": 64, "seed": 5},
    "validate": {"min_images_per_class": 1},  # 40 images: a rare class may have only a few
    "train": {"epochs": 1, "imgsz": 64, "batch": 8, "workers": 0},
    "tune": {"trials": 2, "epochs_per_trial": 1},
}


@pytest.fixture(scope="module")
def kfp_run(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("kfp-project"), TINY)
    return root, run_on_kfp(root)


def test_kfp_local_runs_the_dag_end_to_end_and_registers_pending(kfp_run):
    root, summary = kfp_run
    assert summary["engine"] == "kfp" and summary["status"] == "succeeded"
    assert summary["registered_version"] == "1"
    run_root = root / ".kfp-local"
    registration = json.loads(next(run_root.glob("**/reports_register/registration.json")).read_text())
    assert registration["approval"] == "pending" and registration["registered"] is True
    # Every stage ran as its own task, and the tuned settings reached the final training.
    run_dir = next(run_root.glob("*/defectops-training-*"))  # <submission>/<kfp run>/<task>
    tasks = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert {"ingest", "validate", "augment", "train-plan", "train-select", "train", "evaluate", "register"} <= tasks
    trials = list(run_dir.glob("for-loop-*-iteration-*/train-trial"))  # one task per ParallelFor item
    assert len(trials) == TINY["tune"]["trials"]
    chosen = json.loads((run_dir / "train-select" / "executor_output.json").read_text())["parameterValues"]["Output"]
    run_info = json.loads((run_dir / "train" / "models_train" / "run.json").read_text())
    mlflow.set_tracking_uri(run_info["tracking_uri"])
    logged = mlflow.get_run(run_info["run_id"]).data.params
    assert {k: float(logged[k]) for k in chosen} == pytest.approx(chosen)
    assert len((run_dir / "train" / "models_train" / "results.csv").read_text().splitlines()) == 1 + 1  # 1 epoch


def test_kfp_local_run_made_no_network_attempt(kfp_run):
    root, _ = kfp_run
    log = root / "network_attempts.jsonl"
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert attempts == []


def test_kfp_local_run_used_the_project_settings(kfp_run):
    root, _ = kfp_run
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["tune"]["trials"] == 2  # submit wrote nothing back: no overrides were given

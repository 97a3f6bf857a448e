"""A label-free anomaly model through the same DAG on the local DVC engine: the demo as a new user runs it,
with only `train.task: anomaly` changed."""

import json
import subprocess
import sys

import yaml

from .project import make_project, project_env, run_on_kfp, version_tags

ANOMALY = {
    "ingest": {"n_images": 40, "image_size": 64, "seed": 5},
    "validate": {"min_images_per_class": 1},
    "train": {"task": "anomaly", "imgsz": 64, "memory_patches": 64},
    # The anomaly model standardises every image, so its embedding does not move with the lamp: of the 11
    # features fewer than drift_share may drift on 6 shifted parts. A line that must catch lighting says so.
    "monitor": {"min_window": 5, "critical_features": ["brightness"]},
}


def test_anomaly_model_goes_from_clone_to_a_served_drift_checked_champion(tmp_path):
    project = make_project(tmp_path / "project", ANOMALY)
    demo = subprocess.run([sys.executable, "-m", "defectops.cli", "demo", "--approver", "qa.lead"], cwd=project,
                          env=project_env(project), capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-6000:]

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "validate", "augment", "train", "evaluate", "register"}
    trained = json.loads((project / "models/train/metrics.json").read_text())
    assert trained["task"] == "anomaly" and trained["bank_patches"] == 64
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert evaluation["task"] == "anomaly" and evaluation["val"]["recall"] >= evaluation["tuning_recall"]
    assert json.loads((project / "deploy/versions/v1/model.json").read_text())["task"] == "anomaly"
    verdict = json.loads((project / "monitoring/verdict.json").read_text())
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]
    from defectops.records.store import DecisionStore

    n_test = json.loads((project / "data/raw/ingest_metrics.json").read_text())["per_split"]["test"]
    assert DecisionStore(project / "monitoring/decisions.db").count() == 2 * n_test

    assert version_tags(project) == ["anomaly", "approved", "champion"]
    assert not (project / "network_attempts.jsonl").exists()


def test_the_same_anomaly_settings_run_on_kubeflow_pipelines_local_runner(tmp_path):
    project = make_project(tmp_path / "kfp-project", {**ANOMALY, "tune": {"trials": 2, "epochs_per_trial": 1}})
    summary = run_on_kfp(project)
    assert summary["status"] == "succeeded" and summary["registered_version"] == "1"
    assert version_tags(project)[:2] == ["anomaly", "pending"]  # a person still has to approve it

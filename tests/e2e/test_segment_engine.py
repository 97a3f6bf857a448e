"""A segmentation model through the same DAG on the local DVC engine: the demo as a user with masked images runs
it, with only the import source and `train.task: segment` changed."""

import json
import subprocess
import sys

import yaml

from ..masked_parts import write_parts
from .project import make_project, project_env, run_on_kfp, version_tags


def segment_settings(source) -> dict:
    return {"ingest": {"source": "folders", "path": str(source)},
            "validate": {"min_images_per_class": 1},
            "train": {"task": "segment", "imgsz": 96, "epochs": 6, "mosaic": 0.0},  # wiring, not quality
            "monitor": {"min_window": 5, "critical_features": ["brightness"]}}


def test_segment_model_goes_from_masked_images_to_a_served_drift_checked_champion(tmp_path):
    project = make_project(tmp_path / "project", segment_settings(write_parts(tmp_path / "masked-parts")))
    demo = subprocess.run([sys.executable, "-m", "defectops.cli", "demo", "--approver", "qa.lead"], cwd=project,
                          env=project_env(project), capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-6000:]

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "validate", "augment", "train", "evaluate", "register"}
    assert (project / "data/validated/masks").is_dir()  # the masks reached training through the gate
    trained = json.loads((project / "models/train/metrics.json").read_text())
    assert trained["task"] == "segment"
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert evaluation["task"] == "segment" and evaluation["test_mask_map50"] is not None
    assert evaluation["test_defects"] > 0
    assert json.loads((project / "deploy/versions/v1/model.json").read_text())["task"] == "segment"
    verdict = json.loads((project / "monitoring/verdict.json").read_text())
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]

    assert version_tags(project) == ["segment", "approved", "champion"]
    assert not (project / "network_attempts.jsonl").exists()


def test_the_same_segment_settings_run_on_kubeflow_pipelines_local_runner(tmp_path):
    settings = segment_settings(write_parts(tmp_path / "masked-parts"))
    project = make_project(tmp_path / "kfp-project", {**settings, "tune": {"trials": 2, "epochs_per_trial": 1}})
    summary = run_on_kfp(project)
    assert summary["status"] == "succeeded" and summary["registered_version"] == "1"
    assert version_tags(project)[:2] == ["segment", "pending"]  # a person still has to approve it

import json

import mlflow
import numpy as np
import pytest

from defectops import registry
from defectops.components.register.step import RegisterConfig, register
from defectops.lineage import dvc_dir_md5
from defectops.tracking import tracking_uri


def test_training_is_tracked_in_mlflow(trained, tiny_dataset):
    run_info = json.loads((trained / "run.json").read_text())
    assert (trained / "weights" / "best.pt").stat().st_size > 100_000
    mlflow.set_tracking_uri(tracking_uri())
    run = mlflow.get_run(run_info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["model"] == "yolov8n.yaml"
    assert run.data.tags["dataset_md5"] == dvc_dir_md5(tiny_dataset)
    assert any(k.startswith("train/") for k in run.data.metrics)
    history = mlflow.MlflowClient(tracking_uri()).get_metric_history(run_info["run_id"], "train/box_loss")
    assert [m.step for m in history] == [0, 1, 2]  # two epochs, then Ultralytics' final eval of best.pt
    artifacts = [a.path for a in mlflow.MlflowClient(tracking_uri()).list_artifacts(run_info["run_id"], "model")]
    assert artifacts == ["model/best.pt"]


def test_evaluation_outputs(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["val"]["recall"] >= metrics["target_recall"]  # tuned on val, so it must hold there
    assert metrics["task"] == "detect"
    # The test counts are the per-image scores at the threshold (scores in the CSV are rounded to 1e-6).
    rows = [line.split(",") for line in (evaluated / "per_image.csv").read_text().splitlines()[1:]]
    test = [(float(score), flag == "1") for split, _, score, flag in rows if split == "test"]
    threshold, counts = metrics["threshold"], metrics["test"]
    assert counts["tp"] + counts["fn"] == sum(defect for _, defect in test) > 0
    assert counts["fp"] + counts["tn"] == sum(not defect for _, defect in test)
    surely_caught = sum(defect and score >= threshold + 1e-6 for score, defect in test)
    maybe_caught = sum(defect and score >= threshold - 1e-6 for score, defect in test)
    assert surely_caught <= counts["tp"] <= maybe_caught
    image_matrix = metrics["image_confusion_matrix"]["rows_predicted_columns_true"]
    assert sum(map(sum, image_matrix)) == metrics["test"]["tp"] + metrics["test"]["fp"] + metrics["test"]["fn"] + \
        metrics["test"]["tn"]  # one image-level call per test image: good, or the best-scoring defect type
    assert metrics["test_accuracy"] == sum(image_matrix[i][i] for i in range(len(image_matrix))) / sum(
        map(sum, image_matrix))
    png = (evaluated / "pr_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    lines = (evaluated / "per_image.csv").read_text().splitlines()
    assert lines[0] == "split,path,score,is_defect" and len(lines) > 1


def test_register_is_pending_and_approval_is_human(trained, evaluated, tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    name = "test-detector"
    result = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path)
    version = result["version"]
    info = registry.get_version(name, version)
    assert info.tags["approval"] == "pending" and info.aliases == ["challenger"]
    assert info.tags["submitted_by"] == "data.scientist"
    assert info.tags["dataset_md5"].endswith(".dir") and float(info.tags["threshold"]) >= 0
    # Exactly the tuned threshold: rounded up, it would drop the defects scored right at it.
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert float(info.tags["threshold"]) == metrics["threshold"]
    # Too few defective val images for any 0.95 bound: the version carries it for the approver.
    defective = metrics["calibration"]["defective_images"]
    assert defective < 59 and f"tuned on {defective} defective images" in info.tags["evidence_warning"]
    bound = float(info.tags["recall_lower_bound"])
    assert bound == pytest.approx(metrics["val_recall_lower_bound"], abs=1e-4) and bound < 0.95
    assert registry.by_alias(name, registry.CHAMPION) is None  # nothing is auto-approved

    with pytest.raises(registry.RegistryError, match="four-eyes"):
        registry.approve(name, version, "data.scientist", "mine")
    with pytest.raises(registry.RegistryError, match="needs an authenticated person"):
        registry.approve(name, version, "  ", "no name")
    approved = registry.approve(name, version, "qa.lead", "meets targets", acknowledge=True)
    assert approved.tags["approval"] == "approved" and approved.tags["approved_by"] == "qa.lead"
    assert registry.by_alias(name, registry.CHAMPION).version == version
    assert registry.by_alias(name, registry.CHALLENGER) is None
    with pytest.raises(registry.RegistryError, match="only 'pending'"):
        registry.approve(name, version, "qa.lead", "again")

    second = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path)["version"]
    registry.approve(name, second, "qa.lead", "better", acknowledge=True)
    assert registry.get_version(name, version).tags["approval"] == "superseded"
    assert registry.by_alias(name, registry.CHAMPION).version == second
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.get_version(name, "99")


def test_per_class_thresholds_and_confusion_matrix(evaluated):
    per_class = json.loads((evaluated / "per_class.json").read_text())
    thresholds = json.loads((evaluated / "threshold.json").read_text())["class_thresholds"]
    assert set(thresholds) == {r["class"] for r in per_class}
    for row in per_class:
        assert ("class_threshold" in row) and ("test_recall_at_class_threshold" in row)
        if row["class_threshold"] is not None:
            assert 0 <= row["class_threshold"] <= 1
            assert 0 <= row["test_false_alarms_at_class_threshold"] <= 1
    assert (evaluated / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((evaluated / "metrics.json").read_text())
    matrix = metrics["confusion_matrix"]["rows_predicted_columns_true"]
    n_true_boxes = sum(sum(row[:-1]) for row in matrix)  # every ground-truth box lands in some row
    assert n_true_boxes == metrics["test_boxes"] > 0
    assert "own threshold" in (evaluated / "model_card.md").read_text()


def test_a_class_threshold_reports_the_false_alarms_that_come_with_its_recall():
    from defectops.components.evaluate.step import class_threshold
    from defectops.dataset import Box

    patch = [Box(1, 0.5, 0.5, 0.1, 0.1)]
    paths = {"val": ["v0", "v1"], "test": ["t0", "t1", "t2", "t3"]}
    labels = {"val": {"v0": patch, "v1": []}, "test": {"t0": patch, "t1": patch, "t2": [], "t3": []}}
    # Class 1's own box score per image; a second column so class ids index like the real scores.
    scores = {"val": np.array([[0, 0.6], [0, 0.1]]), "test": np.array([[0, 0.7], [0, 0.2], [0, 0.65], [0, 0.0]])}
    row = class_threshold(1, paths, labels, scores, tuning_recall=1.0)
    assert row == {"class_threshold": 0.6, "test_recall_at_class_threshold": 0.5,
                   "test_false_alarms_at_class_threshold": 0.5}
    # A val image of the class with no box of it at all pulls the threshold to 0: every test image is
    # flagged, a recall of 1 that means nothing — which the false alarms show.
    scores["val"][0, 1] = 0.0
    row = class_threshold(1, paths, labels, scores, tuning_recall=1.0)
    assert (row["test_recall_at_class_threshold"], row["test_false_alarms_at_class_threshold"]) == (1.0, 1.0)

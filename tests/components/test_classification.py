"""The classification task type, end to end: view, training, recall-first evaluation, registry,
ONNX export and the HTTP endpoint, on the same canonical dataset the detector uses."""

import json

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from defectops import registry
from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.verify import version_dir
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.train.step import TrainConfig, train
from defectops.dataset import (
    GOOD,
    Box,
    build_classification_view,
    classification_names,
    image_class,
    label_path,
    read_labels,
    read_manifest,
    read_names,
)

from .conftest import API_KEY, Server, register_and_approve, serve_params

MODEL = "classify-test-model"


def test_image_class_is_the_dominant_defect_or_good():
    names = ["scratch", "pit"]
    assert image_class([], names) == GOOD
    assert image_class([Box(1, .5, .5, .1, .1), Box(1, .2, .2, .1, .1), Box(0, .5, .5, .9, .9)], names) == "pit"
    assert image_class([Box(1, .5, .5, .1, .1), Box(0, .5, .5, .9, .9)], names) == "scratch"  # tie: larger area


def test_classification_view_has_every_class_in_every_split(tiny_dataset, tmp_path):
    view = build_classification_view(tiny_dataset, tmp_path / "view")
    names = read_names(tiny_dataset)
    classes = classification_names(tiny_dataset)
    assert GOOD in classes and classes == sorted(classes)
    rows = read_manifest(tiny_dataset)
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (view / split).iterdir()) == classes
    for row in rows:
        expected = image_class(read_labels(label_path(tiny_dataset, row["path"])), names)
        link = view / row["split"] / expected / row["path"].split("/")[-1]
        assert link.is_symlink() and link.resolve() == (tiny_dataset / row["path"]).resolve()
    assert sum(1 for _ in view.rglob("*.png")) == len(rows)


def test_model_default_follows_task_and_mismatch_is_named():
    assert TrainConfig(task="classify").model == "yolov8n-cls.yaml"
    assert TrainConfig().model == "yolov8n.yaml"
    with pytest.raises(ValidationError, match="does not fit task 'classify'"):
        TrainConfig(task="classify", model="yolov8n.yaml")
    with pytest.raises(ValidationError, match="does not fit task 'detect'"):
        TrainConfig(task="detect", model="yolov8s-cls.yaml")


@pytest.fixture(scope="module")
def classifier(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    config = TrainConfig(task="classify", epochs=2, imgsz=64, batch=8, workers=0, checkpoint_dir=root / "ckpt")
    metrics = train(config, tiny_dataset, root / "model")
    evaluation = evaluate(EvaluateConfig(), root / "model", tiny_dataset, root / "eval")
    return root, metrics, evaluation


def test_classifier_trains_and_is_evaluated_recall_first(classifier, tiny_dataset):
    root, metrics, evaluation = classifier
    assert metrics["task"] == "classify" and metrics["epochs"] == 2
    assert json.loads((root / "model" / "run.json").read_text())["task"] == "classify"
    assert evaluation["task"] == "classify" and evaluation["test_map50"] is None
    assert evaluation["val"]["recall"] >= evaluation["tuning_recall"]  # the threshold is tuned on val
    test_rows = [r for r in read_manifest(tiny_dataset) if r["split"] == "test"]
    matrix = np.array(evaluation["confusion_matrix"]["rows_predicted_columns_true"])
    assert evaluation["confusion_matrix"]["labels"][-1] == GOOD
    assert matrix.sum() == len(test_rows)  # image-level: every test image lands in exactly one cell
    assert evaluation["test_accuracy"] == pytest.approx(np.trace(matrix) / len(test_rows))
    assert "image-level accuracy" in (root / "eval" / "model_card.md").read_text()


def test_classifier_is_registered_deployed_and_served(classifier, tiny_dataset, tmp_path_factory):
    from ultralytics import YOLO

    root, _, _ = classifier
    version = register_and_approve(MODEL, root / "model", root / "eval", tmp_path_factory)
    assert registry.get_version(MODEL, version).tags["task"] == "classify"
    deploy_root = tmp_path_factory.mktemp("classify-deploy")
    deploy(DeployConfig(model_name=MODEL), tiny_dataset, deploy_root)
    folder = version_dir(deploy_root, version)
    detector = OnnxDetector(folder)
    assert detector.task == "classify" and GOOD in detector.output_classes

    model = YOLO(str(root / "model" / "weights" / "best.pt"))
    for row in read_manifest(tiny_dataset)[:5]:
        path = tiny_dataset / row["path"]
        rgb = detector.decode(path.read_bytes())
        calls = detector.predict(rgb)
        probs = model.predict(str(path), imgsz=64, device="cpu", verbose=False)[0].probs.data.tolist()
        p_good = probs[list(model.names.values()).index(GOOD)]
        onnx_score = calls[0].score if calls else 0.0
        assert onnx_score == pytest.approx(1 - p_good, abs=0.02)
        if calls:
            assert calls[0].box == (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0]))

    tmp = tmp_path_factory.mktemp("classify-endpoint")
    server = Server(serve_params(tmp, MODEL, deploy_root)).wait_ready()
    try:
        body = (tiny_dataset / read_manifest(tiny_dataset)[0]["path"]).read_bytes()
        reply = httpx.post(f"{server.url}/v1/predict", content=body, headers={"x-api-key": API_KEY})
        assert reply.status_code == 200, reply.text
        result = reply.json()
        assert result["model_version"] == version
        calls = detector.predict(detector.decode(body))  # the served score is the in-process ONNX one
        assert result["max_confidence"] == pytest.approx(calls[0].score if calls else 0.0, abs=1e-4)
        assert result["decision"] == decide(result["max_confidence"], result["threshold"], (0.5, 1.0))
    finally:
        server.stop()

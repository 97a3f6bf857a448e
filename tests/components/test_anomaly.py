"""The anomaly task type through the same steps: fit on good images only, recall-first evaluation, registry,
ONNX export, the HTTP endpoint (score, region, heatmap) and the drift features."""

import json
import time
from types import SimpleNamespace

import cv2
import httpx
import numpy as np
import pytest
import torch

from defectops import anomaly, backbones, registry
from defectops.anomaly import memory
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.verify import version_dir
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.monitor.step import MonitorConfig, monitor, recent_decisions
from defectops.components.train.anomaly import good_training_images
from defectops.components.train.step import TrainConfig, train
from defectops.dataset import GOOD, label_path, read_labels, read_manifest

from .conftest import API_KEY, Server, register_and_approve, serve_params

MODEL = "anomaly-test-model"


@pytest.fixture(scope="module")
def plain_parts(tmp_path_factory):
    """Synthetic parts, half of them defect-free, at a size where a pasted blob spans a few patches."""
    from defectops.components.ingest.step import IngestConfig, ingest

    out = tmp_path_factory.mktemp("anomaly-data") / "raw"
    ingest(IngestConfig(n_images=40, image_size=96, seed=5, defect_free_fraction=0.5), out)
    return out


@pytest.fixture(scope="module")
def anomaly_fitted(plain_parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("anomaly")
    config = TrainConfig(task="anomaly", imgsz=96, memory_patches=256, checkpoint_dir=root / "ckpt")
    metrics = train(config, plain_parts, root / "model")
    evaluation = evaluate(EvaluateConfig(model_name=MODEL), root / "model", plain_parts, root / "eval")
    return root, metrics, evaluation


def _with_dark_square(rgb: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    marked = rgb.copy()
    marked[y:y + side, x:x + side] = 0
    return marked


def test_only_defect_free_training_images_are_remembered(anomaly_fitted, plain_parts):
    root, metrics, _ = anomaly_fitted
    rows = read_manifest(plain_parts)
    good_train = [r for r in rows if r["split"] == "train" and not read_labels(label_path(plain_parts, r["path"]))]
    defect_train = [r for r in rows if r["split"] == "train" and read_labels(label_path(plain_parts, r["path"]))]
    assert good_train and defect_train  # both kinds exist, and only the good ones are used
    assert {str(p) for p in good_training_images(plain_parts)} == {str(plain_parts / r["path"]) for r in good_train}
    assert metrics["bank_images"] + metrics["calibration_images"] == len(good_train)
    assert metrics["bank_patches"] == 256 and metrics["task"] == "anomaly"
    assert metrics["backbone"] == "efficientnet_lite0"  # the default: ImageNet features, so the tests below use them
    assert metrics["backbone_sha256"] == backbones.BACKBONES["efficientnet_lite0"].sha256
    run = json.loads((root / "model" / "run.json").read_text())
    assert run["task"] == "anomaly" and run["imgsz"] == 96 and run["tile"] is None


def test_anomaly_is_evaluated_recall_first_as_a_binary_call(anomaly_fitted, plain_parts):
    _, _, evaluation = anomaly_fitted
    assert evaluation["task"] == "anomaly" and evaluation["test_map50"] is None
    assert evaluation["image_confusion_matrix"]["labels"] == [anomaly.ANOMALY, GOOD]
    tests = [r for r in read_manifest(plain_parts) if r["split"] == "test"]
    assert np.array(evaluation["image_confusion_matrix"]["rows_predicted_columns_true"]).sum() == len(tests)


def test_the_threshold_also_rests_on_the_defective_training_images_the_memory_never_saw(anomaly_fitted, plain_parts):
    root, _, evaluation = anomaly_fitted
    rows = read_manifest(plain_parts)

    def defective(split):
        return [plain_parts / r["path"] for r in rows
                if r["split"] == split and read_labels(label_path(plain_parts, r["path"]))]

    unseen, val = defective("train"), defective("val")
    calibration = evaluation["calibration"]
    assert calibration["unseen_train_defective_images"] == len(unseen) > 0
    assert calibration["defective_images"] == len(unseen) + len(val)
    scores = memory.AnomalyModel(memory.load(root / "model" / "weights" / "best.pt")).scores(unseen + val)
    caught = (scores >= evaluation["threshold"]).mean()
    assert caught >= evaluation["tuning_recall"] and caught == pytest.approx(calibration["recall"])


def test_a_pasted_defect_scores_higher_than_the_same_good_part(anomaly_fitted, plain_parts):
    root, _, _ = anomaly_fitted
    model = memory.AnomalyModel(memory.load(root / "model" / "weights" / "best.pt"))
    good = [plain_parts / r["path"] for r in read_manifest(plain_parts)
            if r["split"] == "test" and not read_labels(label_path(plain_parts, r["path"]))]
    marked = []
    for i, path in enumerate(good):
        out = root / f"marked{i}.png"
        cv2.imwrite(str(out), _with_dark_square(cv2.imread(str(path)), 30, 40, 18))
        marked.append(out)
    clean, dirty = model.scores(good), model.scores(marked)
    assert np.all((clean >= 0) & (clean < 1)) and np.all(dirty > clean)


def test_too_few_good_images_is_named(plain_parts, tmp_path):
    with pytest.raises(anomaly.AnomalyError, match="needs defect-free training images: found 2"):
        memory.fit(None, [plain_parts / "a.png"] * 2, 64, 16)


def test_patches_are_projected_to_memory_dims_and_one_saved_before_projections_reads_full_patches(anomaly_fitted):
    root, metrics, _ = anomaly_fitted
    fitted = memory.load(root / "model" / "weights" / "best.pt")["memory"]
    assert metrics["patch_dims"] == fitted.bank.shape[1] == TrainConfig().memory_dims < fitted.projection.shape[0]
    image = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        projected = fitted.features(image)
        del fitted._buffers["projection"]  # what unpickling a memory from before projections gives
        full = fitted.features(image)
    assert projected.shape[1] == fitted.bank.shape[1] and full.shape[1] > projected.shape[1]


def test_the_backbone_comes_from_a_checkpoint_or_an_earlier_anomaly_model(anomaly_fitted, plain_parts, tmp_path):
    from ultralytics import YOLO

    from defectops.dataset import sha256_file

    root, first, _ = anomaly_fitted
    detector = tmp_path / "someones-detector.pt"
    YOLO("yolov8n.yaml").save(str(detector))  # stands in for a user's pretrained checkpoint
    earlier = root / "model" / "weights" / "best.pt"
    for weights in (detector, earlier):
        config = TrainConfig(task="anomaly", imgsz=96, memory_patches=64, weights=str(weights),
                             checkpoint_dir=tmp_path / "ckpt")
        metrics = train(config, plain_parts, tmp_path / weights.stem)
        assert metrics["backbone"] == str(weights.resolve())
        assert metrics["parent_weights_sha256"] == sha256_file(weights)  # lineage for the registry
    refit = memory.load(tmp_path / "best" / "weights" / "best.pt")["memory"]
    original = memory.load(earlier)["memory"]
    for a, b in zip(refit.extractor.state_dict().values(), original.extractor.state_dict().values(), strict=True):
        assert a.shape == b.shape and bool((a == b).all())  # the earlier model's features, not new ones
    head_first = SimpleNamespace(model=YOLO("yolov8n.yaml").model.model[10:])  # blocks that read two inputs
    with pytest.raises(anomaly.AnomalyError, match="cut.pt: its first 7 blocks are not a plain backbone sequence"):
        memory.backbone_layers(head_first, "cut.pt")


def test_anomaly_model_is_registered_deployed_served_and_explained(anomaly_fitted, plain_parts, tmp_path_factory):
    root, _, _ = anomaly_fitted
    version = register_and_approve(MODEL, root / "model", root / "eval", tmp_path_factory)
    assert registry.get_version(MODEL, version).tags["task"] == "anomaly"
    deploy_root = tmp_path_factory.mktemp("anomaly-deploy")
    deploy(DeployConfig(model_name=MODEL), plain_parts, deploy_root)
    folder = version_dir(deploy_root, version)
    detector = OnnxDetector(folder)
    assert detector.task == "anomaly"
    assert len((folder / "reference.csv").read_text().splitlines()) > 1  # the drift baseline, from its graph

    torch_model = memory.AnomalyModel(memory.load(folder / "best.pt"))
    paths = [plain_parts / r["path"] for r in read_manifest(plain_parts)[:6]]
    for path, expected in zip(paths, torch_model.scores(paths)):  # the endpoint's graph scores like training's
        calls = detector.predict(detector.decode(path.read_bytes()))
        assert (calls[0].score if calls else 0.0) == pytest.approx(float(expected), abs=1e-4)

    good = next(plain_parts / r["path"] for r in read_manifest(plain_parts)
                if not read_labels(label_path(plain_parts, r["path"])))
    marked = _with_dark_square(cv2.imread(str(good)), 30, 40, 18)
    ok, png = cv2.imencode(".png", marked)
    served = tmp_path_factory.mktemp("anomaly-endpoint")
    # Severity in pixels here (a 96-px part): the hot region's box area grades a rejected part.
    server = Server(serve_params(served, MODEL, deploy_root)).wait_ready()
    try:
        reply = httpx.post(f"{server.url}/v1/predict", content=png.tobytes(), headers={"x-api-key": API_KEY})
        assert reply.status_code == 200, reply.text
        result = reply.json()
        assert result["model_version"] == version and result["decision"] == "reject"  # the pasted square
        region = result["detections"][0]
        assert region["class_name"] == anomaly.ANOMALY
        x1, y1, x2, y2 = region["box"]  # where to look: around the square at (30..48, 40..58)
        assert x1 <= 48 and x2 >= 30 and y1 <= 58 and y2 >= 40
        heat = httpx.post(f"{server.url}/v1/explain", content=png.tobytes(), headers={"x-api-key": API_KEY})
        assert heat.status_code == 200 and heat.content[:8] == b"\x89PNG\r\n\x1a\n"
        # The line's lighting halves: the drift check reads the anomaly model's decisions like a detector's.
        for path in paths * 6:  # 36 decisions, beside the 2 above
            darker = (cv2.imread(str(path)) * 0.5).astype(np.uint8)
            body = cv2.imencode(".png", darker)[1].tobytes()
            assert httpx.post(f"{server.url}/v1/predict", content=body, headers={"x-api-key": API_KEY}).is_success
    finally:
        server.stop()
    deadline = time.monotonic() + 15  # the writer process stores what it received, then ends
    while len(recent_decisions(str(served / "decisions.db"), 100)) < 38 and time.monotonic() < deadline:
        time.sleep(0.2)
    verdict = monitor(MonitorConfig(min_window=30), folder / "reference.csv", str(served / "decisions.db"),
                      served / "monitor")
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]

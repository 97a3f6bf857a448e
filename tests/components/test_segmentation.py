"""The segmentation task type through the same steps: YOLO-seg trained on the canonical masks, mask mAP and area
error in evaluation, ONNX outlines and areas at the endpoint, severity rules graded on mask areas over HTTP, and
the drift check on its decisions."""

import json
import time

import cv2
import httpx
import numpy as np
import pytest

from defectops import registry
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.verify import version_dir
from defectops.components.evaluate.segmentation import true_regions
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.monitor.step import MonitorConfig, monitor, recent_decisions
from defectops.components.train.step import TrainConfig, train
from defectops.dataset import mask_path, read_manifest
from defectops.records.store import DecisionStore

from ..masked_parts import draw_part, write_parts
from .conftest import API_KEY, Server, register_and_approve, serve_params

MODEL = "segment-test-model"


@pytest.fixture(scope="module")
def masked_parts(tmp_path_factory):
    from defectops.components.ingest.step import IngestConfig, ingest

    root = tmp_path_factory.mktemp("segment-data")
    write_parts(root / "src")
    ingest(IngestConfig(source="folders", path=root / "src"), root / "raw")
    return root / "raw"


@pytest.fixture(scope="module")
def segment_fitted(masked_parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    config = TrainConfig(task="segment", imgsz=96, epochs=100, lr0=0.002, mosaic=0.0, checkpoint_dir=root / "ckpt")
    metrics = train(config, masked_parts, root / "model")
    evaluation = evaluate(EvaluateConfig(model_name=MODEL), root / "model", masked_parts, root / "eval")
    return root, metrics, evaluation


def test_a_segmentation_yaml_is_required_for_the_segment_task():
    assert TrainConfig(task="segment").model == "yolov8n-seg.yaml"
    with pytest.raises(ValueError, match="segmentation ones in '-seg'"):
        TrainConfig(task="segment", model="yolov8n.yaml")
    with pytest.raises(ValueError, match="does not fit task 'detect'"):
        TrainConfig(task="detect", model="yolov8s-seg.yaml")


def test_evaluation_reports_mask_map_and_how_exactly_areas_are_measured(segment_fitted, masked_parts):
    root, trained, evaluation = segment_fitted
    assert trained["task"] == evaluation["task"] == "segment"
    assert json.loads((root / "model" / "run.json").read_text())["tile"] is None  # outlines are not cut in tiles
    test = [r["path"] for r in read_manifest(masked_parts) if r["split"] == "test"]
    regions = sum(len(true_regions(cv2.imread(str(mask_path(masked_parts, p)), cv2.IMREAD_UNCHANGED)))
                  for p in test if mask_path(masked_parts, p).exists())
    assert evaluation["test_defects"] == regions > 0
    assert evaluation["test_mask_map50"] > 0.1 and 0 < evaluation["test_defects_measured"] <= regions
    # Discs: a box overstates a disc's area by 4/pi; the traced outline measures it closer.
    assert evaluation["test_area_mape"] < evaluation["test_box_area_mape"]


def _part(defects, size=96, seed=7):
    return cv2.cvtColor(draw_part(np.random.default_rng(seed), size, defects)[0], cv2.COLOR_GRAY2RGB)


@pytest.fixture(scope="module")
def segment_deployed(segment_fitted, masked_parts, tmp_path_factory):
    root, _, _ = segment_fitted
    version = register_and_approve(MODEL, root / "model", root / "eval", tmp_path_factory)
    deploy_root = tmp_path_factory.mktemp("segment-deploy")
    deploy(DeployConfig(model_name=MODEL), masked_parts, deploy_root)
    return version, deploy_root


def test_the_endpoints_outline_and_area_are_the_ones_evaluation_measured(segment_deployed):
    """The ONNX graph's mask decoding (no torch) against Ultralytics' on a letterboxed, non-square part."""
    from ultralytics import YOLO

    version, deploy_root = segment_deployed
    assert registry.get_version(MODEL, version).tags["task"] == "segment"
    folder = version_dir(deploy_root, version)
    detector = OnnxDetector(folder)
    assert detector.task == "segment"
    model = YOLO(str(folder / "best.pt"))
    rgb = np.ascontiguousarray(_part([("blister", 40, 30, 12)])[:72])  # 96 x 72: letterboxed
    served = max(detector.predict(rgb), key=lambda d: d.score)
    result = model.predict(rgb[..., ::-1].copy(), conf=0.001, imgsz=96, retina_masks=True, verbose=False)[0]
    best = int(result.boxes.conf.argmax())
    assert served.score == pytest.approx(float(result.boxes.conf[best]), abs=1e-3)
    reference = int((result.masks.data[best].numpy() > 0.5).sum())
    assert served.area_px == pytest.approx(reference, rel=0.03, abs=3)
    drawn = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(drawn, [np.array(served.polygon)], 1)
    # the outline encloses the measured pixels (int(): a uint64 minus a larger int wraps around)
    assert int(drawn.sum()) == pytest.approx(served.area_px, rel=0.2)


def test_severity_rules_grade_served_defects_by_their_mask_area_then_drift_is_checked(segment_deployed,
                                                                                      masked_parts,
                                                                                      tmp_path_factory):
    """Over HTTP: the same defect type, small (a ~200 px² blister) -> review, large (~700 px²) -> reject, each
    box with its outline and its mask's area; then the line's lighting halves and the drift check says so."""
    version, deploy_root = segment_deployed
    served = tmp_path_factory.mktemp("segment-endpoint")
    rule = {"review_px": 40, "reject_px": 450}
    server = Server(serve_params(served, MODEL, deploy_root, severity={"blister": rule, "pit": rule},
                                 mm_per_px=0.05)).wait_ready()
    replies = {}
    try:
        for name, radius in (("small", 8), ("large", 15)):
            png = cv2.imencode(".png", _part([("blister", 48, 48, radius)])[..., ::-1])[1].tobytes()
            reply = httpx.post(f"{server.url}/v1/predict", content=png, headers={"x-api-key": API_KEY})
            assert reply.status_code == 200, reply.text
            replies[name] = reply.json()
        heat = httpx.post(f"{server.url}/v1/explain", content=png, headers={"x-api-key": API_KEY}, timeout=60)
        assert heat.status_code == 200 and heat.content[:8] == b"\x89PNG\r\n\x1a\n"  # EigenCAM on YOLO-seg
        paths = [masked_parts / r["path"] for r in read_manifest(masked_parts) if r["split"] == "val"][:6]
        for path in paths * 6:  # 36 decisions under half the light, beside the 2 above
            darker = cv2.imencode(".png", (cv2.imread(str(path)) * 0.5).astype(np.uint8))[1].tobytes()
            assert httpx.post(f"{server.url}/v1/predict", content=darker, headers={"x-api-key": API_KEY}).is_success
    finally:
        server.stop()
    for name, expected, (low, high) in (("small", "review", (40, 450)), ("large", "reject", (450, 2000))):
        result = replies[name]
        assert result["model_version"] == version and result["decision"] == expected, (name, result)
        graded = [d for d in result["detections"] if d["score"] >= result["threshold"]]
        blister = max(graded, key=lambda d: d["score"])
        assert blister["class_name"] == "blister" and blister["area_from"] == "mask"
        radius = {"small": 8, "large": 15}[name]  # the drawn disc: pi r^2 px at 0.05 mm per px
        assert low <= blister["area_px"] < high and blister["area_mm2"] == pytest.approx(
            np.pi * radius ** 2 * 0.05 ** 2, rel=0.35)
        assert len(blister["polygon"]) >= 3 and blister["severity"] == expected
    deadline = time.monotonic() + 15  # the writer process stores what it received, then ends
    while len(recent_decisions(str(served / "decisions.db"), 100)) < 38 and time.monotonic() < deadline:
        time.sleep(0.2)
    store = DecisionStore(served / "decisions.db")
    (first,) = store.query(decision="review", limit=1)  # the small blister, recorded with its grade and outline
    assert first["boxes"][0]["severity"] == "review" and first["boxes"][0]["polygon"]
    store.close()
    verdict = monitor(MonitorConfig(min_window=30), version_dir(deploy_root, version) / "reference.csv",
                      str(served / "decisions.db"), served / "monitor")
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]


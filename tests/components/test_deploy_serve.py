import json
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from defectops import registry
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import DeployConfig, DeployError, deploy
from defectops.components.register.step import RegisterConfig, register
from defectops.dataset import read_manifest

MODEL = "serve-test-detector"


@pytest.fixture(scope="module")
def deployed(trained, evaluated, tiny_dataset, tmp_path_factory):
    with pytest.raises(DeployError, match="no champion"):
        deploy(DeployConfig(model_name=MODEL), tiny_dataset, tmp_path_factory.mktemp("none"))
    version = register(RegisterConfig(model_name=MODEL), trained, evaluated, tmp_path_factory.mktemp("reg"))["version"]
    registry.approve(MODEL, version, "qa.lead", "serving test")
    out = tmp_path_factory.mktemp("deploy")
    metrics = deploy(DeployConfig(model_name=MODEL), tiny_dataset, out)
    assert metrics["version"] == version
    return out


def test_deploy_writes_model_metadata_and_reference(deployed, tiny_dataset):
    meta = json.loads((deployed / "model.json").read_text())
    assert meta["model_name"] == MODEL and meta["approved_by"] == "qa.lead"
    assert meta["imgsz"] == 64 and len(meta["names"]) == 4
    reference = (deployed / "reference.csv").read_text().splitlines()
    n_val = sum(r["split"] == "val" for r in read_manifest(tiny_dataset))
    assert len(reference) == n_val + 1
    assert reference[0].split(",")[:4] == ["path", "brightness", "contrast", "sharpness"]


def test_onnx_scores_match_ultralytics(deployed, trained, tiny_dataset):
    from ultralytics import YOLO

    detector = OnnxDetector(deployed)
    model = YOLO(str(trained / "weights" / "best.pt"), task="detect")
    for row in read_manifest(tiny_dataset)[:6]:
        path = tiny_dataset / row["path"]
        onnx_best = max((d.score for d in detector.predict(detector.decode(path.read_bytes()))), default=0.0)
        result = model.predict(str(path), conf=0.001, imgsz=64, device="cpu", verbose=False)[0]
        torch_best = float(result.boxes.conf.max()) if len(result.boxes) else 0.0
        assert onnx_best == pytest.approx(torch_best, abs=0.01)


def test_tampered_weights_are_refused(deployed, tiny_dataset, tmp_path):
    info = registry.by_alias(MODEL, registry.CHAMPION)
    registry.client().set_model_version_tag(MODEL, info.version, "weights_sha256", "0" * 64)
    try:
        with pytest.raises(DeployError, match="does not match the registry"):
            deploy(DeployConfig(model_name=MODEL), tiny_dataset, tmp_path / "d")
    finally:
        registry.client().set_model_version_tag(MODEL, info.version, "weights_sha256", info.tags["weights_sha256"])


@pytest.fixture(scope="module")
def endpoint(deployed, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "inference.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", "serve", "--model-dir", str(deployed),
                             "--port", str(port), "--log", str(log)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "server exited"
                time.sleep(0.25)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_predict_over_http_logs_every_decision(endpoint, tiny_dataset):
    url, log = endpoint
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["model_name"] == MODEL
    rows = read_manifest(tiny_dataset)[:5]
    for row in rows:
        reply = httpx.post(f"{url}/v1/predict", content=(tiny_dataset / row["path"]).read_bytes())
        assert reply.status_code == 200
        body = reply.json()
        assert body["decision"] in {"accept", "reject"}
        assert body["model_version"] == health["model_version"]
        assert (body["decision"] == "reject") == any(d["score"] >= body["threshold"] for d in body["detections"])
        for det in body["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 64
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 5
    for record in records:
        assert {"time", "image_sha256", "brightness", "contrast", "sharpness", "max_confidence", "decision",
                "model_version"} <= set(record)
        assert np.isfinite(record["brightness"])


def test_bad_input_is_a_clear_4xx(endpoint):
    url, _ = endpoint
    empty = httpx.post(f"{url}/v1/predict", content=b"")
    assert empty.status_code == 400 and "empty body" in empty.json()["detail"]
    junk = httpx.post(f"{url}/v1/predict", content=b"GIF89a-not-really")
    assert junk.status_code == 400 and "not a decodable image" in junk.json()["detail"]
    assert httpx.get(f"{url}/healthz").status_code == 200  # still serving

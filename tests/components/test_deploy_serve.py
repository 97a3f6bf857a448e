import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from defectops import registry
from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.verify import DeployError, version_dir
from defectops.dataset import read_manifest

from .conftest import API_KEY, MODEL, Server, register_and_approve, serve_params

AUTH = {"x-api-key": API_KEY}


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_decision_rule_with_review_band():
    assert decide(0.30, 0.3) == "reject" and decide(0.29, 0.3) == "accept"
    assert decide(0.20, 0.3, (0.5, 1.0)) == "review" and decide(0.10, 0.3, (0.5, 1.0)) == "accept"
    assert decide(0.40, 0.3, (0.5, 1.5)) == "review" and decide(0.45, 0.3, (0.5, 1.5)) == "reject"


def test_deploy_refuses_without_champion(tiny_dataset, tmp_path):
    with pytest.raises(DeployError, match="no champion"):
        deploy(DeployConfig(model_name="never-approved"), tiny_dataset, tmp_path)


def test_deploy_writes_verifiable_version_folder(deployed, tiny_dataset):
    champion = registry.by_alias(MODEL, registry.CHAMPION)
    folder = version_dir(deployed, champion.version)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model_name"] == MODEL and meta["approved_by"] == "qa.lead" and meta["imgsz"] == 64
    assert champion.tags["onnx_sha256"] == meta["onnx_sha256"]  # the registry can vouch for the file
    reference = (folder / "reference.csv").read_text().splitlines()
    assert len(reference) == 1 + sum(r["split"] == "val" for r in read_manifest(tiny_dataset))
    assert not [p for p in (deployed / "versions").iterdir() if p.name.startswith(".staging")]


def test_onnx_scores_match_ultralytics(deployed, trained, tiny_dataset):
    from ultralytics import YOLO

    detector = OnnxDetector(version_dir(deployed, registry.by_alias(MODEL, registry.CHAMPION).version))
    model = YOLO(str(trained / "weights" / "best.pt"), task="detect")
    for row in read_manifest(tiny_dataset)[:6]:
        path = tiny_dataset / row["path"]
        onnx_best = max((d.score for d in detector.predict(detector.decode(path.read_bytes()))), default=0.0)
        result = model.predict(str(path), conf=0.001, imgsz=64, device="cpu", verbose=False)[0]
        torch_best = float(result.boxes.conf.max()) if len(result.boxes) else 0.0
        assert onnx_best == pytest.approx(torch_best, abs=0.01)


def test_tampered_weights_are_refused_at_deploy(deployed, tiny_dataset, tmp_path):
    info = registry.by_alias(MODEL, registry.CHAMPION)
    registry.client().set_model_version_tag(MODEL, info.version, "weights_sha256", "0" * 64)
    try:
        with pytest.raises(registry.RegistryError, match="does not match the registry"):
            deploy(DeployConfig(model_name=MODEL), tiny_dataset, tmp_path / "d")
    finally:
        registry.client().set_model_version_tag(MODEL, info.version, "weights_sha256", info.tags["weights_sha256"])


def test_api_key_is_required(endpoint, tiny_dataset):
    server, _ = endpoint
    body = (tiny_dataset / read_manifest(tiny_dataset)[0]["path"]).read_bytes()
    assert httpx.post(f"{server.url}/v1/predict", content=body).status_code == 401
    assert httpx.post(f"{server.url}/v1/predict", content=body, headers={"x-api-key": "wrong"}).status_code == 401
    assert httpx.post(f"{server.url}/v1/explain", content=body).status_code == 401
    bearer = {"authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{server.url}/v1/predict", content=body, headers=bearer).status_code == 200


def _recorded(store_path, part_id: str, expected: int, timeout: float = 10.0) -> list[dict]:
    """The part's decision rows once the writer thread has stored them."""
    import time

    from defectops.records.store import DecisionStore

    store = DecisionStore(store_path)
    deadline = time.monotonic() + timeout
    while (rows := store.query(part=part_id)) and len(rows) < expected or not rows:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return rows


def test_predict_raw_and_batch_and_every_decision_is_recorded(endpoint, deployed, tiny_dataset):
    server, store_path = endpoint
    rows = read_manifest(tiny_dataset)[:3]
    bodies = [(tiny_dataset / r["path"]).read_bytes() for r in rows]
    part = {**AUTH, "x-part-id": "P-000123", "x-line": "line-3", "x-station": "cam-2"}
    single = httpx.post(f"{server.url}/v1/predict", content=bodies[0], headers=part).json()
    assert (single["part_id"], single["line"], single["station"]) == ("P-000123", "line-3", "cam-2")
    assert single["model_name"] == MODEL
    assert single["decision"] == decide(single["max_confidence"], single["threshold"], (0.5, 1.0))
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(bodies)]
    batch = httpx.post(f"{server.url}/v1/predict", files=files, headers=part)
    assert batch.status_code == 200 and len(batch.json()["results"]) == 3
    assert batch.json()["results"][0]["max_confidence"] == pytest.approx(single["max_confidence"])
    records = _recorded(store_path, "P-000123", 4)
    assert len(records) == 4
    first = records[0]
    served = json.loads((version_dir(deployed, single["model_version"]) / "model.json").read_text())
    assert (first["line"], first["station"], first["model_version"], first["precision"]) == (
        "line-3", "cam-2", single["model_version"], served.get("precision", "fp32"))  # int8 when the gate verified it
    assert first["decision"] == single["decision"] and first["score"] == pytest.approx(single["max_confidence"])
    assert {"brightness", "contrast", "sharpness", "max_confidence"} <= set(first["features"])
    assert len(first["image_sha256"]) == 64 and first["latency_ms"] > 0
    archived = [r for r in records if r["decision"] != "accept"]
    assert all(r["image_uri"] and Path(r["image_uri"]).name.startswith(r["image_sha256"]) for r in archived)
    bad = httpx.post(f"{server.url}/v1/predict", content=bodies[0], headers={**AUTH, "x-part-id": "P" * 200})
    assert bad.status_code == 400 and "x-part-id" in bad.json()["detail"]


def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(endpoint):
    server, _ = endpoint
    post = lambda body, **kw: httpx.post(f"{server.url}/v1/predict", content=body, headers=AUTH, **kw)  # noqa: E731
    cases = {
        "empty": (post(b""), 400, "empty body"),
        "junk": (post(b"\x89PNG\r\n\x1a\n-not-really"), 400, "not a decodable PNG image"),
        # The format is read from the magic bytes before Pillow sees the body.
        "format": (post(_gif()), 415, "does not start like an accepted image"),
        "pixels": (post(_png(np.zeros((1200, 1200, 3), np.uint8))), 413, "1200x1200"),
        "truncated": (post(_png(np.full((64, 64, 3), 90, np.uint8))[:80]), 400, "corrupt or truncated"),
    }  # thin images, bombs and chunked floods: tests/security/test_endpoint_limits.py
    for name, (reply, status, text) in cases.items():
        assert reply.status_code == status, (name, reply.text)
        assert text in reply.json()["detail"], name
    too_many = [("files", (f"{i}.png", _png(np.zeros((8, 8, 3), np.uint8)), "image/png")) for i in range(5)]
    assert httpx.post(f"{server.url}/v1/predict", files=too_many, headers=AUTH).status_code in (400, 413)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (16, 16)).save(buf, format="GIF")
    return buf.getvalue()


def test_readyz_metrics_and_openapi(endpoint):
    server, _ = endpoint
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["ready"] is True and ready["model_version"] == registry.by_alias(MODEL, registry.CHAMPION).version
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'defectops_requests_total{route="/v1/predict",status="200"}' in metrics
    assert "defectops_request_seconds_bucket" in metrics and "defectops_decisions_total" in metrics
    assert f'defectops_model_info{{model="{MODEL}",version="{ready["model_version"]}"}} 1.0' in metrics
    assert "/v1/predict" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_explain_returns_a_heatmap_png(endpoint, tiny_dataset):
    server, _ = endpoint
    body = (tiny_dataset / read_manifest(tiny_dataset)[0]["path"]).read_bytes()
    reply = httpx.post(f"{server.url}/v1/explain", content=body, headers=AUTH, timeout=60)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    heat = np.asarray(Image.open(io.BytesIO(reply.content)))
    assert heat.shape == (64, 64, 3)
    assert not np.array_equal(heat, np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))


def test_hot_swap_under_load_and_tampered_swap_refused(trained, evaluated, tiny_dataset, tmp_path,
                                                       tmp_path_factory):
    name = "swap-test-detector"
    root = tmp_path / "deploy"
    v1 = register_and_approve(name, trained, evaluated, tmp_path_factory)
    deploy(DeployConfig(model_name=name), tiny_dataset, root)
    server = Server(serve_params(tmp_path, name, root)).wait_ready()
    body = (tiny_dataset / read_manifest(tiny_dataset)[0]["path"]).read_bytes()
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                reply = http.post(f"{server.url}/v1/predict", content=body, headers=AUTH)
                (seen if reply.status_code == 200 else failures).append(
                    reply.json().get("model_version") if reply.status_code == 200 else reply.text)
    try:
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(hammer)
            time.sleep(1.0)
            v2 = register_and_approve(name, trained, evaluated, tmp_path_factory)
            deploy(DeployConfig(model_name=name), tiny_dataset, root)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not seen or seen[-1] != v2):
                time.sleep(0.2)
            time.sleep(0.5)
            stop.set()
        assert failures == []
        assert seen[0] == v1 and seen[-1] == v2 and len(seen) > 20

        # A newly approved version whose exported file was altered is never served.
        v3 = register_and_approve(name, trained, evaluated, tmp_path_factory)
        deploy(DeployConfig(model_name=name), tiny_dataset, root)
        onnx = version_dir(root, v3) / "model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
        time.sleep(1.5)
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["model_version"] == v2 and "refusing to load a modified artefact" in ready["last_error"]
        reply = httpx.post(f"{server.url}/v1/predict", content=body, headers=AUTH)
        assert reply.json()["model_version"] == v2
    finally:
        stop.set()
        server.stop()

    refused = Server(serve_params(tmp_path, name, root))  # starting on the tampered champion fails closed
    assert refused.proc.wait(timeout=90) == 4
    assert "modified artefact" in refused.proc.stderr.read()


def test_server_refuses_to_start_without_api_keys(deployed, tmp_path):
    server = Server(serve_params(tmp_path, MODEL, deployed), env_extra={"DEFECTOPS_API_KEYS": ""})
    assert server.proc.wait(timeout=90) == 2
    assert "no API keys" in server.proc.stderr.read()


def test_canary_share_goes_to_a_cleared_challenger_only(trained, evaluated, tiny_dataset, tmp_path,
                                                          tmp_path_factory, monkeypatch):
    name = "canary-test-detector"
    root = tmp_path / "deploy"
    v1 = register_and_approve(name, trained, evaluated, tmp_path_factory)
    deploy(DeployConfig(model_name=name), tiny_dataset, root)
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    from defectops.components.register.step import RegisterConfig, register

    v2 = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path / "reg")["version"]
    with pytest.raises(DeployError, match="not cleared for canary"):
        deploy(DeployConfig(model_name=name, alias="challenger"), tiny_dataset, root)
    with pytest.raises(registry.RegistryError, match="four-eyes"):
        registry.approve_canary(name, v2, "data.scientist", "mine")
    registry.approve_canary(name, v2, "qa.lead", "10% on line 2 for a shift", acknowledge=True)
    deploy(DeployConfig(model_name=name, alias="challenger"), tiny_dataset, root)
    server = Server(serve_params(tmp_path, name, root, canary_share=0.3)).wait_ready()
    try:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert (ready["model_version"], ready["canary_version"]) == (v1, v2)
        body = (tiny_dataset / read_manifest(tiny_dataset)[0]["path"]).read_bytes()
        with httpx.Client(headers=AUTH) as http:
            replies = [http.post(f"{server.url}/v1/predict", content=body).json() for _ in range(200)]
        roles = {(r["role"], r["model_version"]) for r in replies}
        assert roles == {("champion", v1), ("canary", v2)}
        share = sum(r["role"] == "canary" for r in replies) / len(replies)
        assert 0.15 < share < 0.45
    finally:
        server.stop()
    assert registry.get_version(name, v2).tags["approval"] == "pending"  # canary is not promotion


def test_a_decision_is_made_without_a_server(deployed, tiny_dataset, tmp_path):
    """What the endpoint does per image, in-process: rejects and reviews are archived under their sha256,
    accepts are not (share 0), the part's keys come back, every decision is counted under its version."""
    import hashlib

    from defectops.components.deploy.http_input import sniff_format
    from defectops.components.deploy.inference import Inference, Metrics
    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.components.deploy.serving import load_verified
    from defectops.records.archive import ImageArchive

    config = ServeConfig(model_name=MODEL, deploy_root=deployed, records_url=None, archive_root=tmp_path / "archive",
                         archive_accept_share=0.0, require_api_key=False)
    model = load_verified(config, registry.by_alias(MODEL, registry.CHAMPION))
    metrics, archive = Metrics(), ImageArchive(config.archive_root)
    inference = Inference(config, archive, metrics)
    images = [(tiny_dataset / r["path"]).read_bytes() for r in read_manifest(tiny_dataset) if r["split"] == "test"]
    for i, data in enumerate(images):
        result = inference.predict_one(model, "champion", data, {"part_id": f"P{i}", "line": "L1", "station": None})
        assert (result["part_id"], result["line"], result["model_version"]) == (f"P{i}", "L1", model.version)
        stored = archive.path_for(hashlib.sha256(data).hexdigest(), sniff_format(data, config.allowed_formats))
        assert stored.exists() == (result["decision"] != "accept"), result["decision"]
        assert all(d["score"] >= result["threshold"] * config.review_band[0] for d in result["detections"])
    counted = [s for s in metrics.decisions.collect()[0].samples if s.name.endswith("_total")]
    assert sum(s.value for s in counted) == len(images) > 0
    assert {s.labels["model_version"] for s in counted} == {model.version}

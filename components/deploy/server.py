"""The inference endpoint: FastAPI + ONNX Runtime, loopback by default, every decision logged."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.monitor.features import image_features

MAX_BODY_BYTES = 20 * 1024 * 1024


class InferenceLog:
    """Append-only JSON lines: the quality record of every decision and the input of drift checks."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock, open(self.path, "a") as fh:
            fh.write(line)


def create_app(model_dir: Path, log_path: Path) -> FastAPI:
    detector = OnnxDetector(model_dir)
    log = InferenceLog(log_path)
    meta = detector.meta
    app = FastAPI(title="defectops inference", version=str(meta["version"]),
                  description=f"Defect detector {meta['model_name']} v{meta['version']} (ONNX Runtime).")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model_name": meta["model_name"], "model_version": meta["version"]}

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HTTPException(413, f"image is {declared} bytes; the limit is {MAX_BODY_BYTES}")
        body = await request.body()
        if not body:
            raise HTTPException(400, "empty body: POST the raw image bytes (PNG, JPEG, BMP or TIFF)")
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"image is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        try:
            rgb = detector.decode(body)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the client's bad input
            raise HTTPException(400, f"body is not a decodable image: {type(exc).__name__}: {exc}") from None
        detections = await run_in_threadpool(detector.predict, rgb)
        scores = [d.score for d in detections]
        decision = decide(scores, detector.threshold)
        shown = [d for d in detections if d.score >= detector.threshold]
        latency_ms = (time.perf_counter() - started) * 1000
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "image_sha256": hashlib.sha256(body).hexdigest(),
            **image_features(rgb),
            "max_confidence": max(scores, default=0.0),
            "n_detections": len(shown),
            "decision": decision,
            "model_version": meta["version"],
            "latency_ms": round(latency_ms, 2),
        }
        log.append(record)
        return {
            "decision": decision,
            "threshold": detector.threshold,
            "model_name": meta["model_name"],
            "model_version": meta["version"],
            "detections": [{"class_id": d.class_id, "class_name": d.class_name, "score": d.score,
                            "box": [round(v, 1) for v in d.box]} for d in shown],
            "max_confidence": record["max_confidence"],
            "latency_ms": round(latency_ms, 2),
        }

    return app

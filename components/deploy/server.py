"""The inference endpoint: FastAPI + ONNX Runtime, loopback by default, every decision logged.

It serves only the registry's `champion`, verifies the exported artefact against the sha256 the
registry holds, and swaps to a newly approved champion without dropping a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import random
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import Field

from defectops import registry
from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.observe import observe
from defectops.components.deploy.step import DeployError, verify_artefacts, version_dir
from defectops.config import StepConfig
from defectops.drift_features import EmbeddingReducer
from defectops.errors import DefectopsError
from defectops.records.archive import ImageArchive
from defectops.records.publish import PublishConfig, Publisher, message_for
from defectops.records.store import DecisionStore
from defectops.records.writer import RecordWriter

log = logging.getLogger("defectops.serve")


class ServeConfig(StepConfig):
    model_name: str = "defectops-detector"
    deploy_root: Path = Path("deploy")
    records_url: str | None = Field("monitoring/decisions.db", description="Decision store: a SQLite file or a "
                                    "SQLAlchemy URL (postgresql+psycopg://...). None records nothing (benchmarks).")
    records_queue: int = Field(10_000, ge=1, description="Decisions waiting for the store; beyond this they are "
                                                         "dropped and counted, never blocking the line.")
    records_retention_days: float | None = Field(90.0, gt=0, description="Older decisions are deleted; None keeps "
                                                                         "everything.")
    archive_root: Path = Field(Path("archive"), description="Content-addressed images of rejects and reviews.")
    archive_accept_share: float = Field(0.01, ge=0, le=1, description="Share of accepted images archived too.")
    publish: PublishConfig = PublishConfig()
    api_keys_env: str = Field("DEFECTOPS_API_KEYS", description="Env var holding comma-separated API keys.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line.")
    require_api_key: bool = Field(True, description="Refuse to start without keys unless false (local dev).")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024, description="Width x height above this is refused (bombs).")
    max_side: int = Field(16384, ge=64, description="Width or height above this is refused.")
    max_aspect_ratio: float = Field(64.0, ge=1, description="Longer side / shorter side above this is refused: no "
                                    "camera frame is that thin, and resizing one to the model's size leaves no pixels.")
    allowed_formats: list[str] = ["PNG", "JPEG", "BMP", "TIFF"]
    max_batch: int = Field(16, ge=1)
    inference_timeout_s: float = Field(10.0, gt=0)
    inference_workers: int = Field(2, ge=1, description="Threads that run inference; health probes never wait "
                                                        "for them.")
    max_queued: int = Field(64, ge=1, description="Images waiting for an inference thread; beyond this a request "
                                                  "gets 503 at once instead of piling up.")
    review_band: tuple[float, float] = Field((0.5, 1.0), description="Scores in [thr*lo, thr*hi) go to review.")
    reload_interval_s: float = Field(2.0, gt=0, description="How often the registry is checked for a new champion.")
    canary_share: float = Field(0.0, ge=0, le=0.5, description="Share of requests for a challenger cleared for "
                                                               "canary traffic ('defectops registry canary').")


PART_FIELD = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")


class BadInput(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class LoadedModel:
    version: str
    detector: OnnxDetector
    folder: Path
    info: registry.VersionInfo
    reducer: EmbeddingReducer | None = None
    explainer: object | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


SERVED_FILES = ("model.onnx", "model.json", "embedding_pca.npz")


def load_verified(config: ServeConfig, info: registry.VersionInfo, role: str = registry.CHAMPION) -> LoadedModel:
    """Load a version only if a second person's approval is on the signed audit log (the rule lives in
    `defectops.approval`) and every file it loads hashes to what the registry recorded at deploy."""
    refusal = registry.served_refusal(info, role)
    if refusal:
        raise DeployError(refusal)
    folder = version_dir(config.deploy_root, info.version)
    if not (folder / "model.onnx").exists():
        raise DeployError(f"{config.model_name} v{info.version} is {role} but not exported to {folder}: "
                          "run 'defectops deploy'")
    verify_artefacts(folder, info, SERVED_FILES)
    return LoadedModel(info.version, OnnxDetector(folder), folder, info, EmbeddingReducer.load(folder))


class ChampionWatcher:
    """Holds the served model and swaps it when the registry's champion changes.

    Requests take a reference to the current model and keep it to the end, so a swap never
    interrupts one; a failed load keeps serving the previous champion and is reported.
    """

    def __init__(self, config: ServeConfig):
        self.config = config
        self.current: LoadedModel | None = None
        self.canary: LoadedModel | None = None
        self.last_error: str | None = None
        self.canary_error: str | None = None
        self._stop = threading.Event()
        self._random = random.Random()

    def pick(self) -> tuple[LoadedModel, str]:
        """The model for one request: the canary for its share of traffic, else the champion."""
        canary = self.canary
        if canary is not None and self._random.random() < self.config.canary_share:
            return canary, "canary"
        return self.current, "champion"

    def refresh(self) -> None:
        self._refresh_champion()
        if self.config.canary_share > 0:
            self._refresh_canary()

    def _refresh_canary(self) -> None:
        challenger = registry.by_alias(self.config.model_name, registry.CHALLENGER)
        if challenger is None or challenger.tags.get("canary") != "approved":
            self.canary, self.canary_error = None, None
            return
        if self.canary is not None and self.canary.version == challenger.version:
            return
        try:
            self.canary, self.canary_error = load_verified(self.config, challenger, "canary"), None
            log.warning("canary v%s takes %.0f%% of requests", challenger.version, 100 * self.config.canary_share)
        except DefectopsError as exc:
            self.canary, self.canary_error = None, str(exc)

    def _refresh_champion(self) -> None:
        champion = registry.by_alias(self.config.model_name, registry.CHAMPION)
        if champion is None:
            self.last_error = f"model '{self.config.model_name}' has no champion"
            return
        if self.current is not None and self.current.version == champion.version:
            self.last_error = None
            return
        try:
            loaded = load_verified(self.config, champion)
        except DefectopsError as exc:
            if self.last_error != str(exc):  # said once, not every few seconds
                log.error("not serving v%s (keeping %s): %s", champion.version,
                          f"v{self.current.version}" if self.current else "nothing", exc)
            self.last_error = str(exc)
            return
        previous = self.current.version if self.current else None
        self.current, self.last_error = loaded, None
        log.warning("serving %s v%s (was %s)", self.config.model_name, loaded.version, previous)

    def run(self) -> None:
        while not self._stop.wait(self.config.reload_interval_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a registry hiccup must not kill the watcher
                self.last_error = f"registry check failed: {exc}"

    def start(self) -> None:
        threading.Thread(target=self.run, name="champion-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def load_api_keys(config: ServeConfig) -> set[str]:
    keys = {k.strip() for k in os.environ.get(config.api_keys_env, "").split(",") if k.strip()}
    if config.api_keys_file:
        keys |= {k.strip() for k in Path(config.api_keys_file).read_text().splitlines() if k.strip()}
    if not keys and config.require_api_key:
        raise DefectopsError(f"no API keys: set {config.api_keys_env} (comma-separated) or serve.api_keys_file, "
                             "or set serve.require_api_key: false for local development")
    return keys


MAGIC = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "BMP": (b"BM",),
         "TIFF": (b"II*\x00", b"MM\x00*"), "GIF": (b"GIF87a", b"GIF89a"), "WEBP": (b"RIFF",)}


def sniff_format(data: bytes, allowed: list[str]) -> str:
    """The format the first bytes declare, from the allow-list only: Pillow then never tries the others."""
    for name in allowed:
        if any(data.startswith(magic) for magic in MAGIC.get(name, ())):
            return name
    raise BadInput(415, f"body does not start like an accepted image ({', '.join(allowed)}); "
                        f"first bytes: {data[:8].hex()}")


def decode_image(data: bytes, config: ServeConfig) -> Image.Image:
    """Open untrusted bytes safely: format sniffed from magic bytes, size limits checked before decoding."""
    if not data:
        raise BadInput(400, "empty body: send the raw image bytes (or multipart files)")
    declared = sniff_format(data, config.allowed_formats)
    try:
        image = Image.open(io.BytesIO(data), formats=[declared])
    except Image.DecompressionBombError as exc:
        raise BadInput(413, f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever PIL says, the body is not an image
        raise BadInput(400, f"body is not a decodable {declared} image: {type(exc).__name__}") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > config.max_pixels or max(width, height) > config.max_side:
        raise BadInput(413, f"image is {width}x{height} pixels; the limits are {config.max_pixels} pixels and "
                            f"{config.max_side} px a side")
    if max(width, height) / min(width, height) > config.max_aspect_ratio:
        raise BadInput(422, f"image is {width}x{height} pixels: aspect ratio above {config.max_aspect_ratio:g}:1 "
                            "is refused (serve.max_aspect_ratio)")
    try:
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise BadInput(413, f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise BadInput(400, f"image data is corrupt or truncated: {type(exc).__name__}: {exc}") from None


class Metrics:
    """Prometheus metrics on a registry of its own, so several apps in one process never collide."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("defectops_requests_total", "HTTP requests", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("defectops_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5))
        self.decisions = Counter("defectops_decisions_total", "Decisions", ["decision", "model_version"],
                                 registry=self.registry)
        self.model = Gauge("defectops_model_info", "Served model version (value 1)", ["model", "version"],
                           registry=self.registry)
        self.records_dropped = Gauge("defectops_records_dropped_total", "Decisions not recorded (store queue "
                                     "full or store down)", registry=self.registry)
        self.records_queue = Gauge("defectops_records_queue", "Decisions waiting for the store",
                                   registry=self.registry)
        self.outbox_pending = Gauge("defectops_outbox_pending", "Messages not yet delivered to the MES",
                                    registry=self.registry)


def create_app(config: ServeConfig) -> FastAPI:
    keys = load_api_keys(config)
    watcher = ChampionWatcher(config)
    watcher.refresh()
    if watcher.current is None:
        raise DeployError(f"cannot start: {watcher.last_error}")
    store = DecisionStore(config.records_url) if config.records_url else None
    writer = (RecordWriter(store.url, config.records_queue, retention_days=config.records_retention_days)
              if store else None)
    if store is None:
        log.warning("serve.records_url is unset: decisions are not recorded (no drift check, no MES hand-off)")
    publisher = Publisher(store, config.publish) if store and config.publish.enabled else None
    archive = ImageArchive(config.archive_root)
    metrics = Metrics()
    # Inference has its own bounded pool: a flood (or a stuck call) queues here, not in the threads that
    # answer health probes, and a timed-out call keeps a pool thread, never a new one.
    pool = ThreadPoolExecutor(max_workers=config.inference_workers, thread_name_prefix="inference")
    waiting = {"n": 0}
    routes = {"/healthz", "/readyz", "/metrics", "/v1/predict", "/v1/explain", "/openapi.json"}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        watcher.start()
        for worker in (writer, publisher):
            if worker:
                worker.start()
        yield
        watcher.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in (writer, publisher):
            if worker:
                worker.stop()

    app = FastAPI(title="defectops inference", version="1", lifespan=lifespan,
                  description="Defect detection endpoint (ONNX Runtime). Serves the registry's champion only.",
                  docs_url=None, redoc_url=None)  # the Swagger page pulls JS from a CDN; /openapi.json is local
    app.state.watcher, app.state.writer, app.state.publisher = watcher, writer, publisher

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 - a bug, not bad input: keep serving, report it
            log.exception("unhandled error on %s", request.url.path)
            response = JSONResponse({"detail": "internal error"}, status_code=500)
        route = request.url.path if request.url.path in routes else "other"
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    def authorize(request: Request) -> None:
        if not keys:
            return
        supplied = request.headers.get("x-api-key") or ""
        bearer = request.headers.get("authorization") or ""
        if bearer.lower().startswith("bearer "):
            supplied = supplied or bearer[7:].strip()
        if not any(secrets.compare_digest(supplied.encode(), k.encode()) for k in keys):
            raise HTTPException(401, "missing or invalid API key (X-API-Key header or Authorization: Bearer)",
                                headers={"WWW-Authenticate": "Bearer"})

    async def read_images(request: Request) -> tuple[list[bytes], bool]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_body_bytes:
            raise BadInput(413, f"body is {declared} bytes; the limit is {config.max_body_bytes}")
        # The limit holds while reading, whatever the headers say: a chunked body declares no length.
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise BadInput(413, f"body exceeds the limit of {config.max_body_bytes} bytes")
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async def replay() -> dict:
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            try:
                form = await Request(request.scope, replay).form(max_files=config.max_batch,
                                                                 max_fields=config.max_batch)
            except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's error
                raise BadInput(400, f"malformed multipart body: {exc}") from None
            files = [await v.read() for _, v in form.multi_items() if hasattr(v, "read")]
            if not files:
                raise BadInput(400, "multipart body has no file parts")
            if len(files) > config.max_batch:
                raise BadInput(413, f"{len(files)} images in one request; the limit is {config.max_batch}")
            return files, True
        return [bytes(body)], False

    def predict_one(model: LoadedModel, role: str, data: bytes, part: dict) -> dict:
        started = time.perf_counter()
        rgb = np.asarray(decode_image(data, config))
        detections, features, _ = observe(model.detector, rgb, model.reducer)
        best = features["max_confidence"]
        threshold = model.detector.threshold
        decision = decide(best, threshold, config.review_band)
        shown = [d for d in detections if d.score >= threshold * config.review_band[0]]
        boxes = [{"class_id": d.class_id, "class_name": d.class_name, "score": d.score,
                  "box": [round(v, 1) for v in d.box]} for d in shown]
        sha256 = hashlib.sha256(data).hexdigest()
        keep = decision != "accept" or random.random() < config.archive_accept_share
        image_uri = archive.store(sha256, data, sniff_format(data, config.allowed_formats)) if keep else None
        latency_ms = (time.perf_counter() - started) * 1000
        if writer is not None:
            row = {"time": datetime.now(UTC), **part, "model_name": config.model_name,
                   "model_version": model.version, "role": role,
                   "precision": model.detector.meta.get("precision", "fp32"), "decision": decision, "score": best,
                   "threshold": threshold, "boxes": boxes, "features": features, "image_sha256": sha256,
                   "image_uri": image_uri, "latency_ms": round(latency_ms, 2)}
            writer.submit(row, message_for({**row, "time": row["time"].isoformat(timespec="milliseconds")},
                                           config.publish))
            if publisher is not None:
                publisher.nudge()
        metrics.decisions.labels(decision, model.version).inc()
        return {"decision": decision, "threshold": threshold, "max_confidence": best,
                "model_name": config.model_name, "model_version": model.version, "role": role, **part,
                "detections": boxes, "latency_ms": round(latency_ms, 2)}

    def part_of(request: Request) -> dict:
        """Which part this is, from x-part-id / x-line / x-station (all optional): the MES's keys."""
        part = {}
        for key in ("part_id", "line", "station"):
            header = f"x-{key.replace('_', '-')}"
            value = request.headers.get(header)
            if value is not None and not PART_FIELD.fullmatch(value):
                raise BadInput(400, f"header {header}: expected 1-128 printable characters without spaces at the "
                                    f"ends, got {value[:40]!r}")
            part[key] = value
        return part

    async def in_threadpool(fn, *args):
        if waiting["n"] >= config.max_queued:
            raise HTTPException(503, f"{waiting['n']} images already wait for inference (serve.max_queued); "
                                     "retry shortly", headers={"Retry-After": "1"})
        waiting["n"] += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            return await asyncio.wait_for(future, timeout=config.inference_timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"inference took longer than {config.inference_timeout_s} s") from None
        finally:
            waiting["n"] -= 1

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(DeployError)
    async def refused_artefact(_: Request, exc: DeployError):
        log.error("refused: %s", exc)
        return JSONResponse({"detail": f"refused: {exc}"}, status_code=503)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        model = watcher.current
        canary = watcher.canary
        body = {"ready": model is not None, "model_name": config.model_name,
                "model_version": model.version if model else None, "last_error": watcher.last_error,
                "canary_version": canary.version if canary else None, "canary_share": config.canary_share,
                "canary_error": watcher.canary_error,
                "records": {"url": store.display_url() if store else None, "queued": writer.depth() if writer else 0,
                            "dropped": writer.dropped if writer else 0,
                            "writer_alive": writer.alive() if writer else None},
                "publish": {"enabled": publisher is not None,
                            "last_error": publisher.last_error if publisher else None}}
        return JSONResponse(body, status_code=200 if model is not None else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.model.clear()
        if writer is not None:
            metrics.records_dropped.set(writer.dropped)
            metrics.records_queue.set(writer.depth())
        if publisher is not None:
            metrics.outbox_pending.set(store.pending_count())
        if watcher.current:
            metrics.model.labels(config.model_name, watcher.current.version).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        authorize(request)
        part = part_of(request)
        images, batch = await read_images(request)
        model, role = watcher.pick()  # pinned for this request, whatever a swap does meanwhile
        results = [await in_threadpool(predict_one, model, role, data, part) for data in images]
        return {"results": results} if batch else results[0]

    @app.post("/v1/explain")
    async def explain(request: Request) -> Response:
        """A heatmap (EigenCAM) of what drove the model's attention, overlaid on the image, as PNG."""
        authorize(request)
        images, _ = await read_images(request)
        model = watcher.current

        def render() -> bytes:
            from defectops.components.deploy.explain import Explainer

            rgb = np.asarray(decode_image(images[0], config))
            with model.lock:
                if model.explainer is None:
                    # best.pt is a pickle: unpickled only once it hashes to what the registry recorded.
                    verify_artefacts(model.folder, model.info, ("best.pt", "model.json"))
                    model.explainer = Explainer(model.folder)
            return model.explainer.heatmap_png(rgb)

        return Response(await in_threadpool(render), media_type="image/png",
                        headers={"X-Model-Version": model.version})

    return app

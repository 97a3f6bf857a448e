"""The inference endpoint: FastAPI + ONNX Runtime, loopback by default, every decision recorded.

It serves only the registry's `champion` (`serving`), checks what arrives (`http_input`) and
decides per image (`inference`); this module wires them into routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from defectops.components.deploy.explain import explainer_for
from defectops.components.deploy.http_input import (
    BadInput,
    authorize,
    decode_image,
    load_api_keys,
    part_of,
    read_images,
)
from defectops.components.deploy.inference import Inference, Metrics
from defectops.components.deploy.serve_config import ServeConfig
from defectops.components.deploy.serving import ChampionWatcher
from defectops.components.deploy.verify import DeployError, verify_artefacts
from defectops.feedback.answers import disagreement
from defectops.records.archive import ImageArchive
from defectops.records.publish import Publisher
from defectops.records.store import DecisionStore
from defectops.records.writer import RecordWriter
from defectops.registries import Registry

log = logging.getLogger("defectops.serve")


class CountRequests:
    """Requests and latency per route, and a JSON 500 for a bug (not bad input) that keeps the endpoint serving.

    Plain ASGI rather than `@app.middleware("http")`: that wrapper streams every response through an extra task
    and queue, a cost paid on each of the line's requests."""

    def __init__(self, app, metrics: Metrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), {"code": None}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:  # noqa: BLE001 - a bug, not bad input: keep serving, report it
            log.exception("unhandled error on %s", scope["path"])
            if status["code"] is None:
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send_counted)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, str(status["code"] or 500)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def create_app(config: ServeConfig, registry: Registry | None = None) -> FastAPI:
    """The endpoint serving `registry`'s champion (the CLI opens the one params.yaml names; default MLflow's)."""
    keys = load_api_keys(config)
    watcher = ChampionWatcher(config, registry)
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
    inference = Inference(config, archive, metrics, writer, publisher)
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

    app.add_middleware(CountRequests, metrics=metrics, routes=routes)

    async def in_threadpool(fn, *args, timeout_s: float = config.inference_timeout_s):
        if waiting["n"] >= config.max_queued:
            raise HTTPException(503, f"{waiting['n']} images already wait for inference (serve.max_queued); "
                                     "retry shortly", headers={"Retry-After": "1"})
        waiting["n"] += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            return await asyncio.wait_for(future, timeout=timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"inference took longer than {timeout_s} s") from None
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
        if store is not None:
            metrics.disagreement.clear()
            metrics.answers.clear()
            for row in await asyncio.to_thread(disagreement, store):  # a GROUP BY on the answers table
                metrics.disagreement.labels(row["model_version"], row["class_name"]).set(row["rate"])
                metrics.answers.labels(row["model_version"], row["class_name"]).set(row["answers"])
        if watcher.current:
            metrics.model.labels(config.model_name, watcher.current.version).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        authorize(request, keys)
        part = part_of(request)
        images, batch = await read_images(request, config)
        model, role = watcher.pick()  # pinned for this request, whatever a swap does meanwhile
        # Concurrently: a batch request's images share model calls (micro-batching) like separate requests' do.
        results = await asyncio.gather(*(in_threadpool(inference.predict_one, model, role, data, part)
                                         for data in images))
        return {"results": results} if batch else results[0]

    @app.post("/v1/explain")
    async def explain(request: Request) -> Response:
        """A heatmap (EigenCAM) of what drove the model's attention, overlaid on the image, as PNG."""
        authorize(request, keys)
        images, _ = await read_images(request, config)
        model = watcher.current

        def render() -> bytes:
            rgb = np.asarray(decode_image(images[0], config))
            with model.lock:
                if model.explainer is None:
                    # best.pt is a pickle: unpickled only once it hashes to what the registry recorded.
                    verify_artefacts(model.folder, model.info, ("best.pt", "model.json"))
                    model.explainer = explainer_for(model.folder)
            return model.explainer.heatmap_png(rgb)

        return Response(await in_threadpool(render, timeout_s=config.explain_timeout_s), media_type="image/png",
                        headers={"X-Model-Version": model.version})

    return app

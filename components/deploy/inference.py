"""One image in, one decision out: detect, decide, archive, record and count.

Kept apart from HTTP so a decision can be checked without a server: `Inference.predict_one` takes
the image bytes and the part's keys and returns what the endpoint answers.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime

import numpy as np

from defectops.components.deploy.decision import apply_severity, decide
from defectops.components.deploy.http_input import decode_image, sniff_format
from defectops.components.deploy.observe import observe
from defectops.components.deploy.serve_config import ServeConfig
from defectops.components.deploy.serving import LoadedModel
from defectops.records.archive import ImageArchive
from defectops.records.publish import Publisher, message_for
from defectops.records.writer import RecordWriter


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
        self.disagreement = Gauge("defectops_inspector_disagreement_ratio", "Share of inspectors' answers that "
                                  "overruled the model, per version and class (a drift signal from people)",
                                  ["model_version", "class_name"], registry=self.registry)
        self.answers = Gauge("defectops_inspector_answers", "Inspectors' answers, per version and class",
                             ["model_version", "class_name"], registry=self.registry)
        self.outbox_pending = Gauge("defectops_outbox_pending", "Messages not yet delivered to the MES",
                                    registry=self.registry)


class Inference:
    """What the endpoint does with each image; writer and publisher are optional (no store: nothing recorded)."""

    def __init__(self, config: ServeConfig, archive: ImageArchive, metrics: Metrics,
                 writer: RecordWriter | None = None, publisher: Publisher | None = None):
        self.config, self.archive, self.metrics = config, archive, metrics
        self.writer, self.publisher = writer, publisher

    def predict_one(self, model: LoadedModel, role: str, data: bytes, part: dict) -> dict:
        config = self.config
        started = time.perf_counter()
        rgb = np.asarray(decode_image(data, config))
        detections, features, _ = observe(model.detector, rgb, model.reducer)
        best = features["max_confidence"]
        threshold = model.detector.threshold
        decision = decide(best, threshold, config.review_band)
        shown = [d for d in detections if d.score >= threshold * config.review_band[0]]
        boxes = [{"class_id": d.class_id, "class_name": d.class_name, "score": d.score,
                  "box": [round(v, 1) for v in d.box],
                  **({"polygon": [list(p) for p in d.polygon]} if d.polygon else {}),
                  **({"area_px": d.area_px} if d.area_px is not None else {})} for d in shown]
        decision = apply_severity(decision, boxes, threshold, config.severity, config.mm_per_px)
        sha256 = hashlib.sha256(data).hexdigest()
        keep = decision != "accept" or random.random() < config.archive_accept_share
        image_uri = self.archive.store(sha256, data, sniff_format(data, config.allowed_formats)) if keep else None
        latency_ms = (time.perf_counter() - started) * 1000
        if self.writer is not None:
            row = {"time": datetime.now(UTC), **part, "model_name": config.model_name,
                   "model_version": model.version, "role": role,
                   "precision": model.detector.meta.get("precision", "fp32"), "decision": decision, "score": best,
                   "threshold": threshold, "boxes": boxes, "features": features, "image_sha256": sha256,
                   "image_uri": image_uri, "latency_ms": round(latency_ms, 2)}
            self.writer.submit(row, message_for({**row, "time": row["time"].isoformat(timespec="milliseconds")},
                                                config.publish))
            if self.publisher is not None:
                self.publisher.nudge()
        self.metrics.decisions.labels(decision, model.version).inc()
        return {"decision": decision, "threshold": threshold, "max_confidence": best,
                "model_name": config.model_name, "model_version": model.version, "role": role, **part,
                "detections": boxes, "latency_ms": round(latency_ms, 2)}

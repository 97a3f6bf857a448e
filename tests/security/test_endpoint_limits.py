"""Hostile bodies get a clear 4xx and the endpoint keeps serving (the bench sends 10,000 more)."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import numpy as np
from PIL import Image

from ..components.conftest import API_KEY

AUTH = {"X-API-Key": API_KEY}


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    """A few kB of PNG that declares side x side pixels (900 megapixels at the default)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (side // 8 + 1) * 64, 9)  # the first rows only: the header is what matters
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def chunked_multipart(megabytes: int):
    """A multipart upload sent chunked: it declares no length, so only a limit held while reading stops it."""
    yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n\r\n'
    for _ in range(megabytes):
        yield b"\0" * (1 << 20)
    yield b"\r\n--b--\r\n"


def test_thin_images_bombs_and_chunked_floods_are_4xx_and_the_server_lives(secured_endpoint, tiny_dataset):
    url = f"{secured_endpoint.url}/v1/predict"
    cases = {
        # Valid but thin: OpenCV's resize asserted on these (HTTP 500) before the aspect limit.
        "1x5000": (_png(np.full((5000, 1, 3), 90, np.uint8)), 422, "aspect ratio above 64:1"),
        "5000x1": (_png(np.full((1, 5000, 3), 90, np.uint8)), 422, "aspect ratio above 64:1"),
        "20000x20": (_png(np.full((20, 20000, 3), 90, np.uint8)), 413, "px a side"),
        "bomb": (bomb_png(), 413, "decompression bomb"),
        "bomb under Pillow's own limit": (bomb_png(12_000), 413, "12000x12000 pixels; the limits are"),
    }
    for name, (body, status, text) in cases.items():
        reply = httpx.post(url, content=body, headers=AUTH, timeout=60)
        assert (reply.status_code, text in reply.json()["detail"]) == (status, True), (name, reply.text)
    flood = httpx.post(url, content=chunked_multipart(100), timeout=120,
                       headers={**AUTH, "content-type": "multipart/form-data; boundary=b"})
    assert flood.status_code == 413 and "exceeds the limit" in flood.json()["detail"]
    assert httpx.get(f"{secured_endpoint.url}/healthz").json() == {"status": "ok"}
    image = next((tiny_dataset / "images" / "test").iterdir()).read_bytes()
    assert httpx.post(url, content=image, headers=AUTH).json()["decision"] in ("accept", "reject", "review")


def test_a_flood_waits_in_a_bounded_queue_and_probes_never_wait_behind_it(secured, tiny_dataset, tmp_path,
                                                                           monkeypatch):
    """Inference has its own pool: beyond serve.max_queued a request gets 503 at once; /healthz stays instant."""
    import threading
    import time

    from fastapi.testclient import TestClient

    import defectops.components.deploy.inference as inference_module
    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.components.deploy.server import create_app

    real_observe = inference_module.observe

    def slow_observe(*args):
        time.sleep(1.0)  # a stuck model
        return real_observe(*args)

    monkeypatch.setattr(inference_module, "observe", slow_observe)
    name, root, _ = secured
    config = ServeConfig(model_name=name, deploy_root=root,
                         records_url=str(tmp_path / "decisions.db"), archive_root=tmp_path / "archive",
                         require_api_key=False, inference_workers=1, max_queued=2)
    image = next((tiny_dataset / "images" / "test").iterdir()).read_bytes()
    statuses = []
    with TestClient(create_app(config)) as client:
        flood = [threading.Thread(target=lambda: statuses.append(client.post("/v1/predict", content=image)
                                                                 .status_code)) for _ in range(5)]
        for thread in flood:
            thread.start()
        time.sleep(0.3)
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        probe_seconds = time.perf_counter() - started
        for thread in flood:
            thread.join()
    assert sorted(statuses) == [200, 200, 503, 503, 503]
    assert probe_seconds < 0.5

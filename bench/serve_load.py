"""Load-test the endpoint on loopback, and compare with plain Ultralytics predict in-process.

    .venv/bin/python bench/serve_load.py [--seconds 20] [--clients 4]

Builds a real served model at the default architecture and image size (yolov8n, 256 px; one
quick training epoch: latency does not depend on how well it learned), registers, approves and
deploys it, starts `defectops serve` on 127.0.0.1 and drives it with concurrent HTTP clients.
Prints throughput, p50/p95/p99 latency and errors. Target on 2 cores: >= 20 images/s sustained,
p99 <= 50 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _endpoint import build_endpoint, served


def percentiles(latencies_ms: list[float]) -> str:
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return f"{p50:6.1f} | {p95:6.1f} | {p99:6.1f}"


def drive(url: str, key: str, bodies: list[bytes], rate: float, clients: int, seconds: float):
    """Offer `rate` requests/s spread over `clients` threads (open loop; 0 = closed loop, flat out).

    Plain keep-alive `http.client` connections: the load generator shares the machine's cores with the endpoint,
    so it should spend as little of them as it can."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(url)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    deadline = start + seconds
    headers = {"x-api-key": key, "content-type": "image/png"}

    def post(connection, body: bytes) -> int:
        connection.request("POST", "/v1/predict", body=body, headers=headers)
        reply = connection.getresponse()
        reply.read()
        return reply.status

    def client(index: int) -> None:
        nonlocal errors
        rng = np.random.default_rng(index)
        interval = clients / rate if rate else 0.0
        next_send = start + index * (interval / clients if rate else 0)
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        post(connection, bodies[0])  # warm the connection
        while True:
            now = time.perf_counter()
            if next_send > now:
                time.sleep(next_send - now)
            if time.perf_counter() >= deadline:
                connection.close()
                return
            t0 = time.perf_counter()
            status = post(connection, bodies[int(rng.integers(len(bodies)))])
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors += 1
            next_send = next_send + interval if rate else time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), seconds, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rates", default="20,40,0", help="requests/s to offer (open loop); 0 = as fast as possible")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-load-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                      DEFECTOPS_ARTIFACT_ROOT=(work / "artifacts").as_uri(),
                      DEFECTOPS_AUDIT_LOG=str(work / "audit.jsonl"))

    from defectops.dataset import read_manifest

    print("building a served model (yolov8n, 256 px) ...", flush=True)
    bodies, params = build_endpoint(work, image_size=256, n_images=48, reason="load test")

    key = "bench-key"
    with served(params, key) as url:
        rows = [(rate, *drive(url, key, bodies, rate, args.clients, args.seconds))
                for rate in [float(r) for r in args.rates.split(",")]]

    from ultralytics import YOLO

    model = YOLO(str(work / "model" / "weights" / "best.pt"), task="detect")
    paths = [str(work / "raw" / r["path"]) for r in read_manifest(work / "raw")]
    model.predict(paths[0], imgsz=256, device="cpu", verbose=False)
    torch_latencies = []
    stop = time.perf_counter() + min(args.seconds, 10)
    i = 0
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        model.predict(paths[i % len(paths)], imgsz=256, conf=0.001, device="cpu", verbose=False)
        torch_latencies.append((time.perf_counter() - t0) * 1000)
        i += 1

    print(f"\nloopback HTTP, {args.clients} concurrent clients, {args.seconds:.0f} s per row, 256 px PNG bodies,"
          " client-side latency:")
    print("| path | offered | images/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for rate, done, seconds, latencies, errors in rows:
        offered = f"{rate:.0f}/s" if rate else "max"
        print(f"| defectops serve (FastAPI + ONNX Runtime) | {offered} | {done / seconds:.1f} | "
              f"{percentiles(latencies)} | {errors} |")
    print(f"| Ultralytics PyTorch predict, in-process, sequential | max | "
          f"{len(torch_latencies) / sum(torch_latencies) * 1000:.1f} | {percentiles(torch_latencies)} | 0 |")


if __name__ == "__main__":
    main()

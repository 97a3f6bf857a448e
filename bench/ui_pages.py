"""Review-page load times with 50 registered versions (goal: every page < 300 ms on 2 cores).

    .venv/bin/python bench/ui_pages.py

Trains one tiny model so the versions have real evaluation artefacts, registers 50 versions of
it, starts `defectops ui` on 127.0.0.1, signs in and times each page over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="defectops-ui-bench-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                      DEFECTOPS_ARTIFACT_ROOT=(work / "artifacts").as_uri(),
                      DEFECTOPS_AUDIT_LOG=str(work / "audit.jsonl"), DEFECTOPS_USER="data.scientist")
    import httpx

    from defectops import registry
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.register.step import RegisterConfig, register
    from defectops.components.train.step import TrainConfig, train
    from defectops.ui import auth

    ingest(IngestConfig(n_images=40, image_size=64), work / "raw")
    train(TrainConfig(epochs=1, imgsz=64, batch=8, workers=0), work / "raw", work / "model")
    evaluate(EvaluateConfig(), work / "model", work / "raw", work / "eval")
    versions = [register(RegisterConfig(), work / "model", work / "eval", work / "reg")["version"] for _ in range(50)]
    for v in versions[:10]:
        registry.approve("defectops-detector", v, "qa.lead", "bench", acknowledge=True)  # stand-in
    auth.add_user(work / "users.json", "qa.lead", "bench-password")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", "ui", "--port", str(port), "--users",
                             str(work / "users.json")])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=url) as http:
            token = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            http.post("/login", data={"username": "qa.lead", "password": "bench-password", "csrf": token})
            pending = versions[-1]
            pages = {"pending list (50 versions)": "/", f"review page v{pending}": f"/versions/{pending}",
                     "PR curves (PNG)": f"/versions/{pending}/pr.png",
                     "false-negative grid": f"/versions/{pending}/artifact/false_negatives.png"}
            print("| page | first load (ms) | median of 20 (ms) | p95 (ms) |\n|---|---|---|---|")
            for label, path in pages.items():
                t0 = time.perf_counter()
                assert http.get(path).status_code == 200, path
                first = (time.perf_counter() - t0) * 1000
                times = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    http.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                print(f"| {label} | {first:.0f} | {np.median(times):.0f} | {np.percentile(times, 95):.0f} |")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()

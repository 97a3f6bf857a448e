"""A served model for the endpoint benches: one quick training, approved by a second name, deployed,
and `defectops serve` on a free loopback port (stopped by pid)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def build_endpoint(work: Path, image_size: int = 128, n_images: int = 32, reason: str = "bench", epochs: int = 1,
                   deploy_config: dict | None = None):
    """Train, register, approve, deploy; returns (the dataset's image bodies, serve params file).

    Benches that measure serving, not accuracy, train one epoch; `deploy_config`: DeployConfig fields."""
    import yaml

    from defectops import registry
    from defectops.components.deploy.step import DeployConfig, deploy
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.register.step import RegisterConfig, register
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset import read_manifest

    ingest(IngestConfig(n_images=n_images, image_size=image_size), work / "raw")
    train(TrainConfig(epochs=epochs, imgsz=image_size, workers=0), work / "raw", work / "model")
    evaluate(EvaluateConfig(), work / "model", work / "raw", work / "eval")
    os.environ["DEFECTOPS_USER"] = "bench.trainer"
    version = register(RegisterConfig(), work / "model", work / "eval", work / "reg")["version"]
    registry.approve("defectops-detector", version, "bench.approver", reason, acknowledge=True)  # stand-in
    deploy(DeployConfig(**(deploy_config or {})), work / "raw", work / "deploy")
    (work / "params.yaml").write_text(yaml.safe_dump({"serve": {
        "deploy_root": str(work / "deploy"), "records_url": str(work / "decisions.db"),
        "archive_root": str(work / "archive")}}))
    return [(work / "raw" / r["path"]).read_bytes() for r in read_manifest(work / "raw")], work / "params.yaml"


@contextlib.contextmanager
def served(params: Path, key: str, log: Path | None = None):
    """`defectops serve` with `params` and API key `key`; yields its URL once /readyz answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the server
    server = subprocess.Popen([sys.executable, "-m", "defectops.cli", "serve", "--port", str(port), "--params",
                               str(params)], env={**os.environ, "DEFECTOPS_API_KEYS": key}, stdout=output,
                              stderr=subprocess.STDOUT if log else None)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        if log:
            output.close()

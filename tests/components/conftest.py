"""Fixtures for the serving tests: an approved, exported model and a live endpoint on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from defectops import registry
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.register.step import RegisterConfig, register

API_KEY = "test-key-0123456789"


def register_and_approve(name, trained, evaluated, tmp_path_factory) -> str:
    version = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path_factory.mktemp("reg"))["version"]
    # A fixture's val split is far below the 59 defects a 0.95 bound needs: the approver acknowledges it.
    registry.approve(name, version, "qa.lead", "serving test", acknowledge=True)
    return version


class Server:
    """`defectops serve` as a real process on a free loopback port."""

    def __init__(self, params: Path, env_extra: dict | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DEFECTOPS_API_KEYS": API_KEY, **(env_extra or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", "serve", "--port", str(self.port),
                                      "--params", str(params)], env=env, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server not ready")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serve_params(tmp_path: Path, model_name: str, deploy_root: Path, **extra) -> Path:
    params = {"serve": {"model_name": model_name, "deploy_root": str(deploy_root),
                        "records_url": str(tmp_path / "decisions.db"), "archive_root": str(tmp_path / "archive"),
                        "reload_interval_s": 0.3, **extra}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


MODEL = "serve-test-detector"


@pytest.fixture(scope="session")
def deployed(trained, evaluated, tiny_dataset, tmp_path_factory) -> Path:
    register_and_approve(MODEL, trained, evaluated, tmp_path_factory)
    root = tmp_path_factory.mktemp("deploy")
    deploy(DeployConfig(model_name=MODEL), tiny_dataset, root)
    return root


@pytest.fixture(scope="session")
def endpoint(deployed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("endpoint")
    # Micro-batching on: the batch requests below share model calls.
    server = Server(serve_params(tmp, MODEL, deployed, max_pixels=1_000_000, max_batch=4, micro_batch=4)).wait_ready()
    yield server, tmp / "decisions.db"
    server.stop()

"""`defectops ui` as a real process on a free loopback port, for the review-page tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


@contextlib.contextmanager
def review_page(users: Path, model_name: str):
    """Yield the page's URL once it answers; stop the process by pid afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", "ui", "--port", str(port), "--users", str(users),
                             "--model-name", model_name])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""The review page never puts request text into HTML unescaped (no browser needed to see it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest

from defectops.ui import auth

PASSWORD = "quality-first-2026"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    users = tmp_path_factory.mktemp("ui") / "users.json"
    auth.add_user(users, "qa.lead", PASSWORD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", "ui", "--port", str(port), "--users", str(users),
                             "--model-name", "escaping-test"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/login", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_an_error_page_escapes_the_url_it_echoes(site):
    """The reported attack: a logged-in approver opens a crafted artefact link."""
    with httpx.Client(base_url=site) as http:
        token = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        assert http.post("/login", data={"username": "qa.lead", "password": PASSWORD, "csrf": token},
                         follow_redirects=False).status_code == 303
        reply = http.get("/versions/1/artifact/" + quote("<img src=x onerror=alert(1)>", safe=""))
    assert reply.status_code == 404
    assert "<img" not in reply.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in reply.text

"""The review page: request text never reaches HTML unescaped, and a name in a header is believed only
from the proxy (no browser needed to see either)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from defectops.ui import auth

from .review_site import review_page

PASSWORD = "quality-first-2026"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    users = tmp_path_factory.mktemp("ui") / "users.json"
    auth.add_user(users, "qa.lead", PASSWORD)
    with review_page(users, "escaping-test") as url:
        yield url


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


def test_a_trusted_identity_header_is_believed_only_from_the_proxy(tmp_path):
    """Behind an authenticating proxy the name comes from a header; a client that sends it itself is refused."""
    from fastapi.testclient import TestClient

    from defectops.ui.app import PROXY_SECRET_HEADER, create_app

    with pytest.raises(ValueError, match="needs a proxy secret"):
        create_app("escaping-test", tmp_path / "users.json", trusted_header="X-Remote-User")
    app = create_app("escaping-test", tmp_path / "users.json", trusted_header="X-Remote-User",
                     proxy_secret="s3cret-from-the-proxy")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        spoofed = client.get("/", headers={"X-Remote-User": "qa.lead"})
        wrong = client.get("/", headers={"X-Remote-User": "qa.lead", PROXY_SECRET_HEADER: "guess"})
        proxied = client.get("/", headers={"X-Remote-User": "qa.lead", PROXY_SECRET_HEADER: "s3cret-from-the-proxy"})
    assert spoofed.status_code == 401 and wrong.status_code == 401
    assert "only believed from the proxy" in spoofed.text
    assert proxied.status_code == 200 and "qa.lead" in proxied.text
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "ui", "--trusted-header", "X-Remote-User",
                             "--users", str(tmp_path / "users.json")], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "DEFECTOPS_PROXY_SECRET"})
    assert result.returncode == 2 and "DEFECTOPS_PROXY_SECRET" in result.stderr

"""The review page as an attacker meets it: escaped output, no inline script to hijack, no framing,
cookies that stay home, slow password guessing, a header name believed only from the proxy, and
files served only from their folders (no browser needed to see any of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from defectops.ui import auth

from ..ui.review_site import review_page

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


def _login_form_token(client) -> str:
    return client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]


def test_pages_carry_a_csp_without_inline_script_and_refuse_framing(tmp_path):
    from fastapi.testclient import TestClient

    from defectops.ui.app import create_app

    auth.add_user(tmp_path / "users.json", "qa.lead", PASSWORD)
    with TestClient(create_app("headers-test", tmp_path / "users.json"), base_url="http://127.0.0.1") as client:
        client.post("/login", data={"username": "qa.lead", "password": PASSWORD, "csrf": _login_form_token(client)})
        for path in ("/login", "/", "/versions/1/artifact/nope", "/static/site.css"):
            reply = client.get(path)
            csp = reply.headers["content-security-policy"]
            assert "script-src" not in csp and "default-src 'none'" in csp, path  # so no script runs at all
            assert "frame-ancestors 'none'" in csp and reply.headers["x-frame-options"] == "DENY", path
            assert reply.headers["x-content-type-options"] == "nosniff", path
            assert "<script" not in reply.text and "style=" not in reply.text, path
        assert client.get("/static/site.css").headers["content-type"].startswith("text/css")


def test_logins_are_rate_limited_per_account_and_client(tmp_path):
    from fastapi.testclient import TestClient

    from defectops.ui.app import create_app

    auth.add_user(tmp_path / "users.json", "qa.lead", PASSWORD)
    with TestClient(create_app("limit-test", tmp_path / "users.json"), base_url="http://127.0.0.1") as client:
        token = _login_form_token(client)
        guesses = [client.post("/login", data={"username": "QA.lead", "password": f"guess-{i}", "csrf": token},
                               follow_redirects=False).status_code for i in range(6)]
        right = client.post("/login", data={"username": "qa.lead", "password": PASSWORD, "csrf": token},
                            follow_redirects=False)
    assert guesses == [401] * 5 + [429]
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0  # even the right password waits


def test_beyond_loopback_the_page_needs_a_persistent_secret_and_sends_secure_cookies(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from defectops.ui.app import SECRET_ENV, create_app

    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ValueError, match=SECRET_ENV):
        create_app("cookie-test", tmp_path / "users.json", local=False)
    monkeypatch.setenv(SECRET_ENV, "from-the-secret-store-0123456789")
    auth.add_user(tmp_path / "users.json", "qa.lead", PASSWORD)
    app = create_app("cookie-test", tmp_path / "users.json", local=False)
    with TestClient(app, base_url="https://review.plant.example") as client:
        reply = client.post("/login", data={"username": "qa.lead", "password": PASSWORD,
                                            "csrf": _login_form_token(client)}, follow_redirects=False)
    cookie = reply.headers["set-cookie"].lower()
    assert reply.status_code == 303
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_a_drift_report_is_served_only_from_the_reports_folder_and_sandboxed(trained, evaluated, tmp_path,
                                                                             monkeypatch):
    import json

    from fastapi.testclient import TestClient

    from defectops.components.register.step import RegisterConfig, register
    from defectops.ui.app import create_app

    reports = tmp_path / "monitoring"
    reports.mkdir()
    (reports / "drift_report.html").write_text("<html><script>evidently()</script></html>")
    outside = tmp_path / "secrets.html"
    outside.write_text("private")
    auth.add_user(tmp_path / "users.json", "qa.lead", PASSWORD)
    versions = {}
    for label, report in (("inside", reports / "drift_report.html"), ("outside", outside)):
        trigger = reports / f"trigger-{label}.json"
        trigger.write_text(json.dumps({"report": str(report), "drifted_features": ["brightness"]}))
        monkeypatch.setenv("DEFECTOPS_TRIGGER_REF", str(trigger))
        versions[label] = register(RegisterConfig(model_name="report-test"), trained, evaluated,
                                   tmp_path / label)["version"]
    app = create_app("report-test", tmp_path / "users.json", reports_root=reports)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.post("/login", data={"username": "qa.lead", "password": PASSWORD, "csrf": _login_form_token(client)})
        inside = client.get(f"/versions/{versions['inside']}/trigger-report")
        escaped = client.get(f"/versions/{versions['outside']}/trigger-report")
    assert inside.status_code == 200 and "evidently()" in inside.text
    assert inside.headers["content-security-policy"].startswith("sandbox allow-scripts;")
    assert "allow-same-origin" not in inside.headers["content-security-policy"]  # its scripts get no session
    assert escaped.status_code == 404 and "private" not in escaped.text


def test_an_s3_key_that_climbs_out_of_the_evidence_folder_is_refused(tmp_path, monkeypatch):
    """A key such as run-1/evaluation/../../../x would be written outside the page's cache."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from defectops.registries import open_registry
    from defectops.registry import RegistryError

    bucket = "defectops-artifacts"
    for var, value in (("AWS_DEFAULT_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                       ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(var, value)
    with moto.mock_aws():
        s3, sm = boto3.client("s3"), boto3.client("sagemaker")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        escape = "run-3/evaluation/../../../../../../../../../../" + str(tmp_path / "planted.txt").lstrip("/")
        s3.put_object(Bucket=bucket, Key="run-3/evaluation/metrics.json", Body=b"{}")
        s3.put_object(Bucket=bucket, Key=escape, Body=b"not yours")
        backend = open_registry("defectops-detector", "sagemaker", sm, s3)
        with pytest.raises(RegistryError, match=r"leaves the evidence folder"):
            backend._download(f"s3://{bucket}/run-3/evaluation/metrics.json")
        assert not (tmp_path / "planted.txt").exists()
        with pytest.raises(RegistryError, match=r"leaves the evidence folder"):
            backend._download(f"s3://{bucket}/../../../../{tmp_path.name}/metrics.json")

"""Four-eyes holds against case variants, machine accounts and names typed into a header."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from defectops import identity, registry
from defectops.components.register.step import RegisterConfig, register
from defectops.errors import DefectopsError
from defectops.ui import auth
from defectops.ui.app import PROXY_SECRET_HEADER, create_app


def _pending(name, trained, evaluated, tmp_path, monkeypatch, who="Data.Scientist", **config):
    monkeypatch.setenv("DEFECTOPS_USER", who)
    return register(RegisterConfig(model_name=name, **config), trained, evaluated, tmp_path)["version"]


@pytest.mark.parametrize("variant", ["DATA.SCIENTIST", " data.scientist ", "Data.Scientist\t"])
def test_a_case_or_space_variant_of_the_submitter_cannot_approve(variant, trained, evaluated, tmp_path, monkeypatch):
    name = "variant-detector"
    version = _pending(name, trained, evaluated, tmp_path, monkeypatch)
    assert registry.get_version(name, version).tags["submitted_by"] == "data.scientist"
    with pytest.raises(registry.RegistryError, match="four-eyes rule: data.scientist submitted"):
        registry.approve(name, version, variant, "looks fine")
    assert registry.get_version(name, version).tags["approval"] == "pending"


@pytest.mark.parametrize("machine", ["service:kfp", "root", "pipeline", "SageMaker", "system:serviceaccount:kf:x"])
def test_a_service_identity_can_never_decide(machine, trained, evaluated, tmp_path, monkeypatch):
    name = "machine-detector"
    version = _pending(name, trained, evaluated, tmp_path, monkeypatch)
    for decide in (registry.approve, registry.reject, registry.approve_canary):
        with pytest.raises(identity.IdentityError, match="is a service identity"):
            decide(name, version, machine, "automated")
    with pytest.raises(DefectopsError, match="service identity"):
        auth.add_user(tmp_path / "users.json", machine, "a-long-password")


def test_a_run_records_its_human_and_its_engine(trained, evaluated, tmp_path, monkeypatch):
    from defectops.pipelines.submission import _with_submitter

    monkeypatch.setenv("DEFECTOPS_USER", " Data.Scientist ")
    merged = _with_submitter({"register": {"model_name": "x"}}, "kfp")
    assert merged["register"] == {"model_name": "x", "submitted_by": "data.scientist", "submitted_via": "kfp"}
    # In the pod the account is root; the register step keeps the human and records the engine beside.
    monkeypatch.setenv("DEFECTOPS_USER", "root")
    version = register(RegisterConfig(model_name="engine-detector", **{k: v for k, v in merged["register"].items()
                                                                       if k != "model_name"}),
                       trained, evaluated, tmp_path)["version"]
    tags = registry.get_version("engine-detector", version).tags
    assert (tags["submitted_by"], tags["submitted_via"]) == ("data.scientist", "service:kfp")
    with pytest.raises(registry.RegistryError, match="four-eyes"):
        registry.approve("engine-detector", version, "DATA.Scientist", "mine")


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_the_review_page_normalises_logins_and_headers(trained, evaluated, tmp_path, monkeypatch):
    name = "page-identity-detector"
    version = _pending(name, trained, evaluated, tmp_path, monkeypatch)
    users = tmp_path / "users.json"
    auth.add_user(users, "data.scientist", "trains-models-2026")
    with TestClient(create_app(name, users), base_url="http://127.0.0.1") as client:
        client.post("/login", data={"username": "DATA.Scientist", "password": "trains-models-2026",
                                    "csrf": _csrf(client.get("/login").text)})
        refused = client.post(f"/versions/{version}/decide",
                              data={"action": "approve", "reason": "mine", "csrf": _csrf(client.get("/").text)})
    assert refused.status_code == 409 and "four-eyes rule: data.scientist submitted" in refused.text

    proxied = create_app(name, users, trusted_header="X-Remote-User", proxy_secret="from-the-proxy")
    with TestClient(proxied, base_url="http://127.0.0.1") as client:
        headers = {"X-Remote-User": "service:kfp", PROXY_SECRET_HEADER: "from-the-proxy"}
        csrf = _csrf(client.get("/", headers=headers).text)
        machine = client.post(f"/versions/{version}/decide", headers=headers,
                              data={"action": "approve", "reason": "automated", "csrf": csrf})
    assert machine.status_code == 409 and "is a service identity" in machine.text
    assert registry.get_version(name, version).tags["approval"] == "pending"

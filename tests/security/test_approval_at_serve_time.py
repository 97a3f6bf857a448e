"""Only a version a second person approved through defectops reaches the line, whatever the registry says."""

from __future__ import annotations

import time

import httpx
import pytest

from defectops import registry
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.verify import DeployError
from defectops.components.register.step import RegisterConfig, register

from ..components.conftest import Server, register_and_approve, serve_params


def _ready_after_reload(server) -> dict:
    time.sleep(1.2)  # reload_interval_s is 0.3 in serve_params
    return httpx.get(f"{server.url}/readyz").json()


def _champion_deployed_and_one_pending(name, trained, evaluated, tiny_dataset, tmp_path, tmp_path_factory,
                                       monkeypatch) -> tuple[str, str, object]:
    """v1 approved and deployed under tmp_path/deploy, v2 registered and pending: (v1, v2, deploy root)."""
    v1 = register_and_approve(name, trained, evaluated, tmp_path_factory)
    root = tmp_path / "deploy"
    deploy(DeployConfig(model_name=name), tiny_dataset, root)
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    v2 = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path / "reg")["version"]
    return v1, v2, root


def test_an_alias_moved_in_mlflow_is_reported_and_not_served(trained, evaluated, tiny_dataset, tmp_path,
                                                             tmp_path_factory, monkeypatch):
    name = "moved-alias-detector"
    v1, v2, root = _champion_deployed_and_one_pending(name, trained, evaluated, tiny_dataset, tmp_path,
                                                     tmp_path_factory, monkeypatch)
    server = Server(serve_params(tmp_path, name, root)).wait_ready()
    try:
        # The pencil on the alias in MLflow's UI: no approval, no audit entry.
        registry.client().set_registered_model_alias(name, registry.CHAMPION, v2)
        ready = _ready_after_reload(server)
        assert ready["model_version"] == v1 and ready["ready"] is True
        assert f"v{v2} holds the champion alias but its approval is 'pending'" in ready["last_error"]
        assert "moved outside defectops" in ready["last_error"]

        # Editing the approval tag as well does not help: the signed log names v1 as the last approval.
        registry.client().set_model_version_tag(name, v2, "approval", "approved")
        ready = _ready_after_reload(server)
        assert ready["model_version"] == v1
        assert f"audit log's last approval or rollback names v{v1}" in ready["last_error"]
        with pytest.raises(DeployError, match="moved outside defectops"):
            deploy(DeployConfig(model_name=name), tiny_dataset, tmp_path / "other-deploy")

        # Put right through defectops (the alias back, then a real approval) and the report clears.
        registry.client().set_model_version_tag(name, v2, "approval", "pending")
        registry.client().set_registered_model_alias(name, registry.CHAMPION, v1)
        assert _ready_after_reload(server)["last_error"] is None
    finally:
        server.stop()


def test_an_alias_moved_before_start_up_serves_the_last_audited_champion_and_says_why(
        trained, evaluated, tiny_dataset, tmp_path, tmp_path_factory, monkeypatch):
    """One click in MLflow's UI while the endpoint was down must not stop the line at its next start."""
    name = "moved-before-start-detector"
    v1, v2, root = _champion_deployed_and_one_pending(name, trained, evaluated, tiny_dataset, tmp_path,
                                                     tmp_path_factory, monkeypatch)
    registry.client().set_registered_model_alias(name, registry.CHAMPION, v2)
    server = Server(serve_params(tmp_path, name, root)).wait_ready()
    try:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["ready"] is True and ready["model_version"] == v1
        assert f"v{v2} holds the champion alias but its approval is 'pending'" in ready["last_error"]
        assert f"serving v{v1}, the last champion the signed audit log names" in ready["last_error"]
        later = _ready_after_reload(server)  # the next polls keep it, and keep saying why
        assert later["model_version"] == v1 and later["last_error"] == ready["last_error"]
    finally:
        server.stop()


def test_a_canary_tag_without_an_audited_clearance_is_refused(trained, evaluated, tmp_path, monkeypatch):
    name = "forged-canary-detector"
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    version = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path)["version"]
    registry.client().set_model_version_tag(name, version, "canary", "approved")
    refusal = registry.served_refusal(registry.get_version(name, version), "canary")
    assert refusal and "no canary clearance by a person other than its submitter" in refusal

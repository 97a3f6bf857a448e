"""A model approved by a second person and exported, for the attacks in this folder to aim at."""

from __future__ import annotations

import pytest

from defectops.components.deploy.step import DeployConfig, deploy

from ..components.conftest import Server, register_and_approve, serve_params

SECURED = "security-detector"


@pytest.fixture(scope="session")
def secured(trained, evaluated, tiny_dataset, tmp_path_factory):
    """(model name, deploy root, served version)."""
    version = register_and_approve(SECURED, trained, evaluated, tmp_path_factory)
    root = tmp_path_factory.mktemp("secured-deploy")
    deploy(DeployConfig(model_name=SECURED), tiny_dataset, root)
    return SECURED, root, version


@pytest.fixture(scope="session")
def secured_endpoint(secured, tmp_path_factory):
    name, root, _ = secured
    server = Server(serve_params(tmp_path_factory.mktemp("secured-endpoint"), name, root)).wait_ready()
    yield server
    server.stop()

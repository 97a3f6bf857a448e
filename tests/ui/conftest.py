"""The review page as a real process with two registered versions (v1 approved, v2 pending)."""

from __future__ import annotations

import os

import pytest

from defectops import registry
from defectops.components.register.step import RegisterConfig, register
from defectops.ui import auth

from .review_site import review_page

MODEL = "ui-test-detector"
PASSWORDS = {"qa.lead": "quality-first-2026", "data.scientist": "trains-models-2026"}


def register_as(trained, evaluated, tmp_path, who="data.scientist") -> str:
    os.environ["DEFECTOPS_USER"] = who
    try:
        return register(RegisterConfig(model_name=MODEL), trained, evaluated, tmp_path)["version"]
    finally:
        os.environ.pop("DEFECTOPS_USER", None)


@pytest.fixture(scope="module")
def site(trained, evaluated, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    v1 = register_as(trained, evaluated, tmp)
    registry.approve(MODEL, v1, "qa.lead", "first line release", acknowledge=True)  # a fixture's thin val
    v2 = register_as(trained, evaluated, tmp)
    users = tmp / "users.json"
    for name, password in PASSWORDS.items():
        auth.add_user(users, name, password)
    with review_page(users, MODEL) as url:
        yield url, v1, v2, tmp

"""Every DEFECTOPS_* variable the code reads is in one table (defectops/environment.py = the README's), and one
that beats a params.yaml field says so."""

import logging
import re
from pathlib import Path

import pytest

from defectops import environment

ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_the_code_reads_is_in_the_table_and_the_readme():
    read = set()
    for folder in ("defectops", "components", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"DEFECTOPS_[A-Z_]+[A-Z]", path.read_text()))
    assert {"DEFECTOPS_TRIGGER", "DEFECTOPS_CHECKPOINT_DIR", "DEFECTOPS_API_KEYS"} <= read  # the scan sees them
    assert read == set(environment.VARIABLES), (read ^ set(environment.VARIABLES))
    assert environment.markdown_table() in (ROOT / "README.md").read_text()


def test_an_override_of_a_params_field_is_logged_and_an_unlisted_variable_refused(monkeypatch, caplog):
    monkeypatch.delenv("DEFECTOPS_TRIGGER", raising=False)
    assert environment.override("DEFECTOPS_TRIGGER", "register.trigger", "manual") == "manual"
    monkeypatch.setenv("DEFECTOPS_TRIGGER", "drift")
    with caplog.at_level(logging.WARNING, "defectops.environment"):
        assert environment.override("DEFECTOPS_TRIGGER", "register.trigger", "manual") == "drift"
    assert "DEFECTOPS_TRIGGER=drift overrides register.trigger=manual" in caplog.text
    with pytest.raises(KeyError, match="DEFECTOPS_NEW: not in defectops.environment.VARIABLES"):
        environment.override("DEFECTOPS_NEW", "x.y", 1)

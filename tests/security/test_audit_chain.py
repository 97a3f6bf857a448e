"""The audit log proves who decided: a cut, an emptied or deleted file, or a rewrite is caught."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from typer.testing import CliRunner

from defectops import audit, registry
from defectops.cli import app
from defectops.components.register.step import RegisterConfig, register


@pytest.fixture
def decided(trained, evaluated, tmp_path, monkeypatch, request):
    """A model with two approvals on an audit log of its own; returns (name, log path)."""
    name = f"audit-{request.node.name[:40]}"
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(log))
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    for n in range(2):
        version = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path / f"r{n}")["version"]
        registry.approve(name, version, "qa.lead", f"release {n}", acknowledge=True)  # a fixture's thin val
    return name, log


def _verify(name, log):
    return audit.verify(log, registry.audit_anchors(name))


def _rewrite(lines: list[str], key: bytes | None) -> list[str]:
    """Change who approved first, then recompute every hash (and MAC, when the key is known) after it."""
    entries = [json.loads(line) for line in lines]
    entries[1]["actor"] = "someone.else"
    previous = audit.GENESIS
    for entry in entries:
        entry["prev_hash"] = previous
        body = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
        entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        if key is not None:
            entry["mac"] = hmac.new(key, entry["hash"].encode(), hashlib.sha256).hexdigest()
        previous = entry["hash"]
    return [json.dumps(e, sort_keys=True) for e in entries]


def test_an_intact_log_verifies_against_the_registry(decided):
    name, log = decided
    assert _verify(name, log) == 6  # twice: register, approve (intent), approve (done)
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log), "--model-name", name])
    assert result.exit_code == 0 and "matching the registry's anchors" in result.output


def test_a_cut_tail_is_detected(decided):
    name, log = decided
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(audit.AuditError, match="its tail was cut off"):
        _verify(name, log)


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_an_emptied_or_deleted_log_fails_when_the_registry_holds_decisions(decided, damage):
    name, log = decided
    log.write_text("") if damage == "emptied" else log.unlink()
    with pytest.raises(audit.AuditError, match="empty" if damage == "emptied" else "missing"):
        _verify(name, log)
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log), "--model-name", name])
    assert result.exit_code == 5
    # What the endpoint concludes: nothing approved can be trusted.
    champion = registry.by_alias(name, registry.CHAMPION)
    assert "audit log does not verify" in registry.served_refusal(champion)


def test_a_rewrite_with_recomputed_hashes_is_detected(decided, monkeypatch):
    name, log = decided
    lines = log.read_text().splitlines()
    log.write_text("\n".join(_rewrite(lines, None)) + "\n")  # an outsider: no key
    with pytest.raises(audit.AuditError, match=":2: signature does not match"):
        _verify(name, log)
    log.write_text("\n".join(_rewrite(lines, b"a-guessed-key")) + "\n")
    with pytest.raises(audit.AuditError, match=":1: signature does not match"):
        _verify(name, log)
    # An insider holding the key still cannot make the rewrite agree with the registry's anchor.
    log.write_text("\n".join(_rewrite(lines, audit.signing_key())) + "\n")
    assert audit.verify(log) == len(lines)
    with pytest.raises(audit.AuditError, match="not the one the registry anchored"):
        _verify(name, log)


def test_the_decision_is_written_before_the_registry_changes(trained, evaluated, tmp_path, monkeypatch):
    name = "intent-detector"
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("DEFECTOPS_USER", "data.scientist")
    version = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path)["version"]
    seen = []

    def crash(*args):  # the registry goes away mid-decision
        seen.append([(e["action"], e["phase"]) for e in audit.read()])
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(registry, "set_tags", crash)
    with pytest.raises(ConnectionError):
        registry.approve(name, version, "qa.lead", "ok", acknowledge=True)
    assert seen == [[("register", "done"), ("approve", "intent")]]
    entries = audit.read()
    assert [(e["action"], e["phase"]) for e in entries][-1] == ("approve", "failed")
    assert "registry unreachable" in entries[-1]["details"]["error"]
    assert audit.verify(tmp_path / "audit.jsonl", registry.audit_anchors(name)) == 3


def test_people_read_one_row_per_decision_with_its_outcome(decided, monkeypatch):
    """The log keeps intent and confirmation; the history shown to people folds them into one decision, and a
    change that failed or never confirmed says so."""
    name, log = decided
    with pytest.raises(RuntimeError), audit.recorded("approve", "qa.lead", name, "9", reason="bad"):
        raise RuntimeError("registry unreachable")
    audit.append("reject", "qa.lead", name, "10", phase="intent", reason="crashed mid-change")
    entries = [e for e in audit.read(log) if e["model"] == name]
    rows = audit.decisions(entries)
    decided_rows = [r for r in rows if r["action"] in ("approve", "reject")]
    assert [(r["action"], r["version"], r["details"]["reason"], r["outcome"]) for r in decided_rows] == [
        ("approve", "1", "release 0", "done"), ("approve", "2", "release 1", "done"),
        ("approve", "9", "bad", "failed"), ("reject", "10", "crashed mid-change", "unconfirmed")]
    assert "registry unreachable" in decided_rows[2]["error"]
    assert len([e for e in entries if e["action"] in ("approve", "reject")]) == 2 * 2 + 2 + 1  # the log keeps all

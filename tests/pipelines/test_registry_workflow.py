"""The approval workflow on a real MLflow registry (sqlite) with the hash-chained audit log."""

import json

import pytest
from typer.testing import CliRunner

from defectops import audit, registry
from defectops.cli import app
from defectops.components.register.step import RegisterConfig, register


@pytest.fixture
def model_name(request):
    return f"wf-{request.node.name[:40]}"


def _register(name, trained, evaluated, tmp_path, monkeypatch, who="data.scientist"):
    monkeypatch.setenv("DEFECTOPS_USER", who)
    return register(RegisterConfig(model_name=name), trained, evaluated, tmp_path)["version"]


def test_four_eyes_reasons_and_states(trained, evaluated, tmp_path, monkeypatch, model_name):
    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    with pytest.raises(registry.RegistryError, match="four-eyes rule: data.scientist submitted"):
        registry.approve(model_name, v1, "data.scientist", "looks fine to me")
    with pytest.raises(registry.RegistryError, match="needs a reason"):
        registry.approve(model_name, v1, "qa.lead", " ")
    assert registry.get_version(model_name, v1).tags["approval"] == "pending"

    approved = registry.approve(model_name, v1, "qa.lead", "recall 0.97 at the operating point", acknowledge=True)
    assert approved.tags["approval"] == "approved" and approved.aliases == ["champion"]
    assert approved.tags["approved_by"] == "qa.lead" and approved.tags["approved_at"]
    with pytest.raises(registry.RegistryError, match="only 'pending'"):
        registry.approve(model_name, v1, "qa.lead", "again")

    v2 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    rejected = registry.reject(model_name, v2, "qa.lead", "misses scratches on the FN grid")
    assert rejected.tags["approval"] == "rejected" and rejected.tags["rejection_reason"].startswith("misses")
    assert registry.by_alias(model_name, registry.CHALLENGER) is None
    with pytest.raises(registry.RegistryError, match="'rejected'; only 'pending'"):
        registry.approve(model_name, v2, "qa.lead", "changed my mind")
    assert registry.by_alias(model_name, registry.CHAMPION).version == v1


def test_thin_evidence_is_approved_only_when_the_approver_acknowledges_it(trained, evaluated, tmp_path, monkeypatch,
                                                                          model_name):
    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    warning = registry.get_version(model_name, v1).tags["evidence_warning"]
    assert "cannot show recall >= 0.95" in warning
    registry.set_tags(model_name, v1, {"evidence_warning": ""})  # emptied in the registry UI: the signed entry holds
    with pytest.raises(registry.RegistryError, match="acknowledge-evidence") as refused:
        registry.approve(model_name, v1, "qa.lead", "recall holds on every class")
    assert warning in str(refused.value) and registry.get_version(model_name, v1).tags["approval"] == "pending"
    with pytest.raises(registry.RegistryError, match="acknowledge-evidence"):
        registry.approve_canary(model_name, v1, "qa.lead", "a canary sees production parts too")

    approved = registry.approve(model_name, v1, "qa.lead", "thin val acknowledged; 80 more defects ordered",
                                acknowledge=True)
    assert approved.aliases == ["champion"]
    entry = [e for e in audit.read() if e["model"] == model_name and e["action"] == "approve"][-1]
    assert entry["details"]["acknowledged_evidence_warning"] == warning


def test_rollback_restores_previous_champion(trained, evaluated, tmp_path, monkeypatch, model_name):
    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(model_name, "ops", "nothing to roll back")
    registry.approve(model_name, v1, "qa.lead", "first", acknowledge=True)
    v2 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    registry.approve(model_name, v2, "qa.lead", "second", acknowledge=True)
    assert registry.get_version(model_name, v1).tags["approval"] == "superseded"

    restored = registry.rollback(model_name, "shift.lead", "v2 rejects good parts on line 3")
    assert restored.version == v1 and restored.aliases == ["champion"]
    assert restored.tags["approval"] == "approved"
    gone = registry.get_version(model_name, v2)
    assert gone.tags["approval"] == "rolled_back" and gone.tags["rolled_back_by"] == "shift.lead"
    assert registry.champion_history(model_name) == [v1]


def test_every_action_is_audited_and_edits_are_detected(trained, evaluated, tmp_path, monkeypatch, model_name):
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    registry.approve(model_name, v1, "qa.lead", "ok", acknowledge=True)
    v2 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    registry.approve(model_name, v2, "qa.lead", "better", acknowledge=True)
    registry.rollback(model_name, "qa.lead", "field complaints")
    entries = audit.read(tmp_path / "audit.jsonl")
    # Decisions are written as intent first, then confirmed once the registry has changed.
    assert [(e["action"], e["phase"]) for e in entries] == [
        ("register", "done"), ("approve", "intent"), ("approve", "done"), ("register", "done"),
        ("approve", "intent"), ("approve", "done"), ("rollback", "intent"), ("rollback", "done")]
    assert [e["actor"] for e in entries][:3] == ["data.scientist", "qa.lead", "qa.lead"]
    assert entries[2]["details"]["intent_seq"] == entries[1]["seq"]
    assert audit.verify(tmp_path / "audit.jsonl") == 8

    runner = CliRunner()
    assert runner.invoke(app, ["audit", "verify", "--path", str(tmp_path / "audit.jsonl")]).exit_code == 0

    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    edited = json.loads(lines[1])
    edited["actor"] = "someone.else"  # rewrite who approved
    (tmp_path / "audit.jsonl").write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True), *lines[2:]]) + "\n")
    with pytest.raises(audit.AuditError, match=r"audit.jsonl:2: content does not match its hash"):
        audit.verify(tmp_path / "audit.jsonl")
    result = runner.invoke(app, ["audit", "verify", "--path", str(tmp_path / "audit.jsonl")])
    assert result.exit_code == 5

    (tmp_path / "audit.jsonl").write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # delete a line
    with pytest.raises(audit.AuditError, match=r":2: prev_hash does not match"):
        audit.verify(tmp_path / "audit.jsonl")


def test_cli_workflow(trained, evaluated, tmp_path, monkeypatch, model_name):
    from defectops.ui import auth

    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    users = tmp_path / "users.json"
    auth.add_user(users, "Data.Scientist", "trains-models-2026")
    auth.add_user(users, "qa.lead", "quality-first-2026")
    runner = CliRunner()
    approve = ["registry", "approve", v1, "--reason", "good", "--model-name", model_name, "--users", str(users)]
    not_signed_in = runner.invoke(app, approve)
    assert not_signed_in.exit_code == 2 and "not logged in" in not_signed_in.output
    login = runner.invoke(app, ["login", "DATA.scientist", "--users", str(users), "--password-stdin"],
                          input="trains-models-2026\n")
    assert login.exit_code == 0 and "signed in as data.scientist" in login.output
    refused = runner.invoke(app, approve)
    assert refused.exit_code == 4 and "four-eyes" in refused.output
    wrong = runner.invoke(app, [*approve, "--user", "qa.lead", "--password-stdin"], input="guess\n")
    assert wrong.exit_code == 4 and "wrong password" in wrong.output
    thin = runner.invoke(app, [*approve, "--user", "qa.lead", "--password-stdin"], input="quality-first-2026\n")
    assert thin.exit_code == 4 and "--acknowledge-evidence" in thin.output  # a fixture's val is far below 59 defects
    ok = runner.invoke(app, [*approve, "--acknowledge-evidence", "--user", "qa.lead", "--password-stdin"],
                       input="quality-first-2026\n")
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(app, ["registry", "show", v1, "--model-name", model_name])
    assert json.loads(shown.stdout)["tags"]["approved_by"] == "qa.lead"
    listed = json.loads(runner.invoke(app, ["registry", "list", "--json", "--model-name", model_name]).stdout)
    assert [(v["version"], v["tags"]["approval"], v["aliases"]) for v in listed] == [(v1, "approved", ["champion"])]


@pytest.mark.parametrize("columns", [80, 200])
def test_registry_list_keeps_version_approval_and_aliases_whole_at_any_width(
        trained, evaluated, tmp_path, monkeypatch, model_name, columns):
    v1 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    registry.approve(model_name, v1, "qa.lead", "first", acknowledge=True)
    v2 = _register(model_name, trained, evaluated, tmp_path, monkeypatch)
    monkeypatch.setenv("COLUMNS", str(columns))
    result = CliRunner().invoke(app, ["registry", "list", "--model-name", model_name])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= columns and "…" not in result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in lines if line.count("│") > 3 and line.split("│")[1].strip().isdigit()}
    assert rows[v1][:3] == [v1, "approved", "champion"] and rows[v2][:2] == [v2, "pending"]
    assert ("not shown at this width" in result.output) == (columns == 80)

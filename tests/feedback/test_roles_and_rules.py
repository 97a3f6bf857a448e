"""Who may do what: inspectors label and never release a model; a labeller is never a model's second person;
inspectors' disagreement starts retraining by the drift path."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from defectops import approval
from defectops.cli import app
from defectops.components.monitor.step import MonitorConfig, monitor
from defectops.errors import RefusedError, RegistryError
from defectops.feedback import answers
from defectops.feedback.config import FeedbackConfig
from defectops.records.archive import ImageArchive
from defectops.records.store import DecisionStore
from defectops.ui import auth

from .test_answers import decide


def test_inspectors_label_approvers_label_and_decide(tmp_path):
    users = tmp_path / "users.json"
    auth.add_user(users, "Ines", "inspects-parts-2026", ("inspector",))
    auth.add_user(users, "qa.lead", "quality-first-2026")
    known = auth.load_users(users)
    assert auth.roles_of(known, "INES") == ("inspector",) and auth.roles_of(known, "qa.lead") == ("approver",)
    auth.require_role("ines", auth.roles_of(known, "ines"), "label")
    auth.require_role("qa.lead", auth.roles_of(known, "qa.lead"), "label")
    with pytest.raises(RefusedError, match="ines is inspector; to decide needs the role approver"):
        auth.require_role("ines", auth.roles_of(known, "ines"), "decide")
    with pytest.raises(Exception, match="expected one or more of inspector, approver"):
        auth.add_user(users, "x.y", "long enough password", ("admin",))
    # A users file from before roles: everyone in it was an approver, and stays one.
    legacy = json.loads(users.read_text())
    legacy["users"]["qa.lead"].pop("roles")
    users.write_text(json.dumps(legacy))
    assert auth.roles_of(auth.load_users(users), "qa.lead") == ("approver",)


def test_an_inspector_cannot_approve_from_the_cli_even_with_a_valid_token(tmp_path):
    token = auth.issue_token("ines", ("inspector",))
    result = CliRunner().invoke(app, ["registry", "approve", "1", "--reason", "looks fine", "--model-name",
                                      "never-registered"], env={auth.TOKEN_ENV: token})
    assert result.exit_code == RefusedError.exit_code
    assert "ines is inspector; to decide needs the role approver" in " ".join(result.output.split())


def _register_entry(labellers: str) -> dict:
    return {"model": "m", "version": "2", "action": "register", "actor": "data.scientist", "phase": "done",
            "details": {"os_user": "ci", "feedback_labellers": labellers}}


def test_whoever_labelled_the_feedback_is_not_the_second_person():
    tags = {"submitted_by": "data.scientist", "feedback_labellers": "ines,qa.lead"}
    entries = [_register_entry("ines,qa.lead")]
    assert approval.submitters(tags, entries, "m", "2") == {"data.scientist", "ci", "ines", "qa.lead"}
    with pytest.raises(RegistryError, match="four-eyes rule: qa.lead .* labelled inspector feedback"):
        approval.check_decision("m", "2", "pending", approval.submitters(tags, entries, "m", "2"), "QA.Lead",
                                "checked", "approved")
    # Editing the tag away changes nothing: the signed register entry still names the labellers.
    assert "qa.lead" in approval.submitters({"submitted_by": "data.scientist"}, entries, "m", "2")
    assert approval.check_decision("m", "2", "pending", approval.submitters(tags, entries, "m", "2"), "second.person",
                                   "checked", "approved") == "second.person"
    approved = [*entries, {"model": "m", "version": "2", "action": "approve", "actor": "qa.lead", "phase": "done",
                           "details": {}}]
    assert approval.champion_refusal("m", "2", {**tags, "approval": "approved"}, approved) == (
        "m v2 has no audited approval by a person other than its submitter; not served")


def _store_with_answers(tmp_path, disagreeing: int, agreeing: int) -> str:
    store = DecisionStore(tmp_path / "decisions.db")
    archive = ImageArchive(tmp_path / "archive")
    ids = store.record_many([decide(i, "accept", 0.05, archive, features={"brightness": 100.0 + i})
                             for i in range(disagreeing + agreeing)])
    for i, record_id in enumerate(ids):
        answers.answer(store, record_id, "ines", "defect" if i < disagreeing else "good")
    store.close()
    pd.DataFrame({"brightness": [1.0, 2.0]}).to_csv(tmp_path / "reference.csv", index=False)
    return str(tmp_path / "decisions.db")


def test_inspectors_overruling_the_model_start_a_retraining_by_the_drift_path(tmp_path):
    records = _store_with_answers(tmp_path, disagreeing=4, agreeing=6)
    config = MonitorConfig(features=["brightness"], min_window=1000, retrain={"enabled": False})
    verdict = monitor(config, tmp_path / "reference.csv", records, tmp_path / "out",
                      FeedbackConfig(min_answers=5, max_disagreement=0.3))
    assert verdict["status"] == "insufficient_data"  # too few images for a drift test; people said enough
    assert verdict["disagreement"]["exceeded"] | {"rate": None} == {
        "model_version": "3", "answers": 10, "disagreements": 4, "rate": None}
    trigger = json.loads((tmp_path / "out" / "retrain_trigger.json").read_text())
    assert trigger["kind"] == "disagreement" and trigger["disagreement_rate"] == pytest.approx(0.4)
    assert "inspectors overruled v3 on 40% of 10" in trigger["reason"]
    assert verdict["retrain"]["action"] == "alert only (retraining disabled)"

    calm = _store_with_answers(tmp_path / "calm", disagreeing=1, agreeing=9)
    quiet = monitor(config, tmp_path / "reference.csv", calm, tmp_path / "calm-out",
                    FeedbackConfig(min_answers=5, max_disagreement=0.3))
    assert quiet["disagreement"]["exceeded"] is None and "retrain" not in quiet
    few = monitor(config, tmp_path / "reference.csv", records, tmp_path / "few-out", FeedbackConfig(min_answers=50))
    assert few["disagreement"]["exceeded"] is None  # 10 answers are not a verdict when 50 are asked for

"""Champion/challenger gate: the same test split, each model at its own threshold."""

import json

import pytest

from defectops import registry
from defectops.components.evaluate.gate import compare
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.register.step import RegisterConfig, register


def test_compare_checks_recall_then_precision_with_margin():
    champion = {"recall": 0.96, "precision": 0.90}
    assert compare({"recall": 0.96, "precision": 0.90}, champion, 0.0)[0]
    ok, reason = compare({"recall": 0.95, "precision": 0.99}, champion, 0.0)
    assert (ok, reason) == (False, "test recall 0.9500 < champion's 0.9600")
    assert compare({"recall": 0.95, "precision": 0.99}, champion, 0.02)[0]
    assert compare({"recall": 0.97, "precision": 0.80}, champion, 0.02) == (
        False, "test precision 0.8000 < champion's 0.9000 - 0.02 (evaluate.gate_margin)")
    assert not compare({"recall": 0.96, "precision": 0.90}, champion, -0.01)[0]  # must beat it


def test_a_challenger_whose_test_recall_is_nan_is_refused_with_the_reason():
    """A test split without a defective image: recall cannot be measured, so 'not worse' cannot be shown."""
    nan = float("nan")
    ok, reason = compare({"recall": nan, "precision": 1.0}, {"recall": nan, "precision": 1.0}, 0.0)
    assert not ok and reason == ("test recall is undefined: the test split holds no defective image, so no miss "
                                 "can be counted; add defective test images")
    ok, reason = compare({"recall": 0.97, "precision": 0.9}, {"recall": nan, "precision": 0.9}, 0.0)
    assert not ok and reason.startswith("champion's test recall is undefined")


def test_worse_challenger_ends_the_run_without_registration(trained, evaluated, tiny_dataset, tmp_path):
    name = "gate-test-detector"
    v1 = register(RegisterConfig(model_name=name), trained, evaluated, tmp_path / "r1")["version"]
    registry.approve(name, v1, "qa.lead", "baseline", acknowledge=True)

    same = evaluate(EvaluateConfig(model_name=name), trained, tiny_dataset, tmp_path / "eval_same")
    assert same["gate"]["passed"] and same["gate"]["champion_version"] == v1
    assert same["gate"]["champion"]["test"] == same["test"]  # same model, same split, same threshold

    strict = evaluate(EvaluateConfig(model_name=name, gate_margin=-0.05), trained, tiny_dataset, tmp_path / "eval")
    assert not strict["gate"]["passed"]
    result = register(RegisterConfig(model_name=name), trained, tmp_path / "eval", tmp_path / "r2")
    assert result["registered"] is False and f"not better than champion v{v1}" in result["reason"]
    assert json.loads((tmp_path / "r2" / "registration.json").read_text())["registered"] is False
    assert [v.version for v in registry.list_versions(name)] == [v1]


@pytest.mark.parametrize("margin", [2, -2])
def test_margin_is_validated(margin):
    with pytest.raises(ValueError):
        EvaluateConfig(gate_margin=margin)


def test_an_evaluation_without_a_gate_verdict_registers_nothing(trained, evaluated, tmp_path):
    from defectops.errors import RefusedError

    report = json.loads((evaluated / "metrics.json").read_text())
    del report["gate"]  # e.g. a report written by hand or by another tool
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(report))
    with pytest.raises(RefusedError, match=r"eval/metrics.json: no champion/challenger gate verdict"):
        register(RegisterConfig(model_name="no-gate-detector"), trained, tmp_path / "eval", tmp_path / "r")
    assert registry.list_versions("no-gate-detector") == []

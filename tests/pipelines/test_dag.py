from pathlib import Path

import yaml

from defectops.pipelines.dag import TRAINING_DAG, edges, topological_order
from defectops.pipelines.engines.dvc import dvc_yaml_text, render

REPO = Path(__file__).resolve().parents[2]


def test_committed_dvc_yaml_is_the_rendered_dag():
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml_text(), "run 'defectops pipeline compile --engine dvc'"


def test_topology():
    assert topological_order() == ["ingest", "validate", "augment", "train", "evaluate", "register"]
    # Only validate reads the imported data: everything after it sees the validated set.
    assert edges() == {("ingest", "validate"), ("validate", "augment"), ("augment", "train"),
                       ("train", "evaluate"), ("validate", "evaluate"), ("train", "register"),
                       ("evaluate", "register")}


def test_dvc_rendering_keeps_every_edge():
    stages = render()["stages"]
    producer = {out: name for name, spec in stages.items() for out in spec.get("outs", [])}
    rendered_edges = {(producer[d], name) for name, spec in stages.items() for d in spec.get("deps", [])
                      if d in producer}
    assert rendered_edges == edges()


def test_a_stage_reruns_when_any_source_its_command_runs_changes():
    """Read off the imports, lazy ones included: a hand-kept list had missed tiling.py, which train and
    evaluate import inside functions, so editing it re-ran nothing."""
    stages = render()["stages"]
    for name in ("train", "evaluate"):
        assert {"defectops/tiling.py", "defectops/dataset.py", "defectops/__init__.py",
                f"components/{name}"} <= set(stages[name]["deps"]), name
    assert "defectops/registry.py" in stages["register"]["deps"]
    assert "defectops/registry.py" not in stages["ingest"]["deps"]  # importing data needs no registry
    for name, spec in stages.items():
        assert not any(d.startswith("defectops/cli/") for d in spec["deps"]), name  # its own command, not the CLI
        assert all((REPO / d).exists() for d in spec["deps"] if d.startswith(("defectops/", "components/"))), name


def test_every_stage_command_has_help():
    from typer.testing import CliRunner

    from defectops.cli import app

    runner = CliRunner()
    for stage in TRAINING_DAG:
        result = runner.invoke(app, [stage.name, "--help"])
        assert result.exit_code == 0 and "--params" in result.output
    for extra in (["serve", "--help"], ["demo", "--help"], ["registry", "approve", "--help"]):
        assert runner.invoke(app, extra).exit_code == 0
    assert yaml.safe_load(dvc_yaml_text())["stages"]

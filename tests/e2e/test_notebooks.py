"""The notebooks a data scientist uses, executed for real against a tiny project (local engine)."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from .project import make_project, project_env

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "ingest": {"n_images": 40, "image_size": 64, "seed": 5},
    "validate": {"min_images_per_class": 1},  # 40 images: a rare class may have only a few
    "train": {"epochs": 2, "imgsz": 64, "batch": 8, "workers": 0},
}
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
source, target = sys.argv[1], sys.argv[2]
nb = nbformat.read(source, as_version=4)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
nbformat.write(nb, target)
"""


def _execute(root: Path, name: str, parameters: str) -> nbformat.NotebookNode:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters  # what papermill does with the cell tagged 'parameters'
    source = root / f"in_{name}"
    nbformat.write(nb, source)
    result = subprocess.run([sys.executable, "-c", RUNNER, str(source), str(root / name)], cwd=root,
                            env=project_env(root), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return nbformat.read(root / name, as_version=4)


def _outputs(nb, kind: str) -> list:
    return [o.get("data", {}).get(kind) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {})]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("nb-project"), TINY)


def test_submit_notebook_runs_the_local_pipeline_and_leaves_a_pending_version(project):
    nb = _execute(project, "01_submit_run.ipynb", 'engine = "local"\nparams = {"train": {"epochs": 1}}\n'
                                                  'project_dir = "."')
    texts = _outputs(nb, "text/plain")
    summary = eval(texts[0])  # the run's summary dict, as the notebook shows it  # noqa: S307
    assert summary["engine"] == "local" and summary["status"] == "succeeded"
    assert summary["registered_version"] == "1" and 0.0 <= summary["test_recall"] <= 1.0
    assert "('1', 'pending', ['challenger']" in texts[-1]
    assert "epochs: 1" in (project / "params.yaml").read_text()  # the override is what DVC recorded
    lock = (project / "dvc.lock").read_text()
    assert "epochs: 1" in lock


def test_review_notebook_shows_the_evidence(project):
    if not (project / "reports" / "evaluate" / "metrics.json").exists():
        pytest.skip("needs the submit notebook's run")
    nb = _execute(project, "02_review_run.ipynb", 'project_dir = "."')
    metrics = json.loads((project / "reports" / "evaluate" / "metrics.json").read_text())
    assert f"'threshold': {metrics['threshold']}" in _outputs(nb, "text/plain")[0]
    assert len(_outputs(nb, "image/png")) == 2  # PR curve and the false-negative grid
    assert any("recall" in html for html in _outputs(nb, "text/html"))  # per-class table
    assert any("Model card" in md or "model card" in md.lower() for md in _outputs(nb, "text/markdown"))

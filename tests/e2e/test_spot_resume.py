"""Spot interruption: the pipeline is SIGKILLed mid-training, started again, and finishes from the checkpoint."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .project import make_project, project_env

TINY = {"ingest": {"n_images": 40, "image_size": 64, "seed": 11},
        "validate": {"min_images_per_class": 1},
        "train": {"epochs": 6, "imgsz": 64, "batch": 8, "workers": 0}}


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path, TINY, init_dvc=True)


def _epochs_logged(project) -> int:
    files = glob.glob(str(project / "models/checkpoints/*/ultralytics/results.csv"))
    return max((len(open(f).read().splitlines()) - 1 for f in files), default=0)


def test_killed_training_resumes_and_registers_once(project):
    env = project_env(project)
    first = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _epochs_logged(project) < 2 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the spot instance is gone: no cleanup, no goodbye
    first.wait()
    done_before = _epochs_logged(project)
    assert 1 <= done_before < 6, "the kill must land mid-training"
    run_id_before = open(glob.glob(str(project / "models/checkpoints/*/mlflow_run_id"))[0]).read().strip()
    assert not (project / "models/train/run.json").exists()

    again = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    run = json.loads((project / "models/train/run.json").read_text())
    assert run["resumed"] is True and run["run_id"] == run_id_before  # one MLflow run across the interruption
    epochs = (project / "models/train/results.csv").read_text().splitlines()[1:]
    seen = [int(line.split(",")[0]) for line in epochs]
    # An epoch cut short by the kill is trained again from the last checkpoint, so it may appear twice.
    assert sorted(set(seen)) == [1, 2, 3, 4, 5, 6] and seen[-1] == 6 and len(seen) <= 6 + 1

    check = subprocess.run([sys.executable, "-c",
                            "from defectops import registry;"
                            "print([(v.version, v.run_id, v.tags['approval']) for v in "
                            "registry.list_versions('defectops-detector')])"],
                           cwd=project, env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"},
                           capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == str([("1", run_id_before, "pending")]), check.stderr[-2000:]
    assert not glob.glob(str(project / "models/checkpoints/*/ultralytics"))  # cleaned once finished

"""The main job end to end on the local DVC engine, on a tiny config, as a new user runs it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .project import make_project, project_env

TINY = {
    "ingest": {"n_images": 40, "image_size": 64, "seed": 5},
    "validate": {"min_images_per_class": 1},  # 40 images: a rare class may have only a few
    "train": {"epochs": 2, "imgsz": 64, "batch": 8, "workers": 0},
    "monitor": {"min_window": 5},  # the tiny test split has 6 images
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"), TINY)


def _run(root, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=project_env(root), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(project):
    result = _run(project, "defectops.cli", "demo", "--approver", "qa.lead")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def test_main_job_leaves_every_artefact(project, demo):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "validate", "augment", "train", "evaluate", "register"}
    # The dataset a model saw is the validated set (bad files set aside), as dvc.lock records it.
    dataset_md5 = next(o["md5"] for o in lock["stages"]["validate"]["outs"] if o["path"] == "data/validated")
    assert json.loads((project / "reports/validate/report.json").read_text())["passed"] is True
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert {"threshold", "val", "test", "test_map50"} <= set(evaluation)
    assert (project / "reports/evaluate/pr_curve.png").stat().st_size > 5_000
    assert (project / "mlflow.db").exists()
    assert (project / "deploy/versions/v1/model.onnx").stat().st_size > 1_000_000
    verdict = json.loads((project / "monitoring/verdict.json").read_text())
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]
    assert (project / "monitoring/drift_report.html").exists()
    assert json.loads((project / "monitoring/retrain_trigger.json").read_text())["action"] == "retrain"
    from defectops.records.store import DecisionStore

    n_test = json.loads((project / "data/raw/ingest_metrics.json").read_text())["per_split"]["test"]
    assert DecisionStore(project / "monitoring/decisions.db").count() == 2 * n_test
    # The story is told: approval by a named person, drift found only after the lighting shift.
    out = demo.stdout + demo.stderr
    assert "defectops login qa.lead" in out and "defectops registry approve 1 --reason" in out
    assert out.index("drift check: ok") < out.index("drift check: drift")

    # Lineage: the registered version names the dataset exactly as dvc.lock does.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    check = subprocess.run([sys.executable, "-c",
                            "from defectops import registry; v = registry.get_version('defectops-detector', '1');"
                            "print(v.tags['dataset_md5'], v.tags['approval'], ','.join(v.aliases))"],
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert check.stdout.split() == [dataset_md5, "approved", "champion"], check.stderr
    # How the training set was made (augmentation config, counts, what came from what) is on the run.
    listing = ("import mlflow; from defectops import registry; v = registry.get_version('defectops-detector', '1'); "
               "print(*sorted(a.path for a in mlflow.MlflowClient().list_artifacts(v.run_id, 'data')))")
    artifacts = subprocess.run([sys.executable, "-c", listing],
                               cwd=project, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert artifacts.stdout.split() == ["data/augment_log.csv", "data/augment_metrics.json"], artifacts.stderr


def test_nothing_phones_home(project, demo):
    attempts = project / "network_attempts.jsonl"
    assert not attempts.exists(), attempts.read_text()


def test_second_repro_skips_every_stage(project, demo):
    started = time.perf_counter()
    result = _run(project, "dvc", "repro")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    for stage in ("ingest", "validate", "augment", "train", "evaluate", "register"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert "Running stage" not in result.stdout
    print(f"no-op dvc repro took {elapsed:.1f} s")


def test_corrupt_image_fails_validate_by_name(project, demo):
    bad = project / "data/raw/images/train/operator_upload.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    try:
        result = _run(project, "defectops.cli", "validate", "--dataset", "data/raw", "--report", "reports/check")
        assert result.returncode == 3
        assert "images/train/operator_upload.png" in result.stderr
    finally:
        bad.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_drift_starts_exactly_one_retraining_and_a_pending_version(project, demo):
    """The closed loop: shifted traffic -> drift -> one retraining however often the monitor fires
    -> a new version waiting for a person, tagged with why it was trained."""
    n_test = json.loads((project / "data/raw/ingest_metrics.json").read_text())["per_split"]["test"]
    window = ["--window", str(n_test)]  # the newest window is the lighting-shifted traffic
    checks = [_run(project, "defectops.cli", "monitor", *window) for _ in range(4)]
    assert all(c.returncode == 0 for c in checks), checks[0].stderr[-2000:]
    actions = [json.loads(c.stdout)["retrain"]["action"] for c in checks]
    assert actions[0] == "retraining started"
    assert all(a.startswith("skipped") for a in actions[1:]), actions

    state = json.loads((project / "monitoring/retrain_state.json").read_text())
    assert state["runs_started"] == 1 and state["alerts"] == 1 + 4  # the demo's own drift alert, then ours
    deadline = time.monotonic() + 600
    while _alive(state["last_run"]["pid"]) and time.monotonic() < deadline:
        time.sleep(1)
    log = Path(state["last_run"]["log"]).read_text()
    assert "Running stage 'register'" in log, log[-3000:]

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    check = subprocess.run([sys.executable, "-c",
                            "import json; from defectops import registry;"
                            "print(json.dumps([[v.version, v.tags['approval'], v.tags['trigger'],"
                            " v.tags['trigger_ref']] for v in registry.list_versions('defectops-detector')]))"],
                           env=env, capture_output=True, text=True, timeout=120)
    versions = json.loads(check.stdout)
    assert [v[:3] for v in versions] == [["1", "approved", "manual"], ["2", "pending", "drift"]]
    assert versions[1][3].endswith("monitoring/retrain_trigger.json")  # the approver can see why

    again = _run(project, "defectops.cli", "monitor", *window)
    assert json.loads(again.stdout)["retrain"]["action"].startswith("skipped: cool-down")

    history = subprocess.run([sys.executable, "-c",
                              "import mlflow; mlflow.set_tracking_uri(__import__('defectops.tracking').tracking."
                              "tracking_uri()); runs = mlflow.search_runs(experiment_names=['defectops-monitoring']);"
                              "print(len(runs), sorted(set(runs['tags.status'])))"],
                             env=env, capture_output=True, text=True, timeout=120)
    # the demo's two checks (ok, then drift) and our five
    assert history.stdout.split(maxsplit=1) == ["7", "['drift', 'ok']\n"], history.stderr[-2000:]
    assert not (project / "network_attempts.jsonl").exists()

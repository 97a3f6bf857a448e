"""The stage adapter every engine calls: declared paths swapped for engine paths, same step command."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from defectops.pipelines.engines.stage import StageError, sagemaker_training

REPO_PARAMS = __import__("pathlib").Path(__file__).resolve().parents[2] / "params.yaml"


def _cli(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "pipeline", "stage", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    result.stderr = " ".join(result.stderr.split())  # the console wraps long messages
    return result


def _tiny_params(tmp_path):
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["ingest"].update(n_images=16, image_size=64)
    params["train"].update(epochs=1, imgsz=64, batch=8, workers=0)
    params["tune"].update(epochs_per_trial=1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_stage_runs_the_step_at_engine_paths(tmp_path):
    params = _tiny_params(tmp_path)
    out = tmp_path / "elsewhere" / "raw"
    result = _cli("ingest", "--params-text", params.read_text(), "--path", f"data/raw={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "manifest.csv").exists() and not (tmp_path / "data").exists()


def test_an_engine_sets_what_only_it_knows_in_the_stages_own_sections(tmp_path):
    """`--set` is how the SageMaker engine hands the register stage the S3 locations of earlier jobs' outputs."""
    params = _tiny_params(tmp_path)
    out = tmp_path / "raw"
    result = _cli("ingest", "--params", str(params), "--path", f"data/raw={out}", "--set", "ingest.n_images=6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((out / "manifest.csv").read_text().splitlines()) == 1 + 6
    assert yaml.safe_load(params.read_text())["ingest"]["n_images"] == 16  # the given file is left as it was
    result = _cli("ingest", "--params", str(params), "--set", "train.epochs=1")
    assert result.returncode == 2 and "reads params sections ['ingest']; not ['train']" in result.stderr
    result = _cli("ingest", "--params", str(params), "--set", "n_images=6")
    assert result.returncode == 2 and "SECTION.KEY=VALUE" in result.stderr
    result = _cli("ingest", "--params", str(params), "--path", f"data/raw={out}", "--set", "ingest.n_images=many")
    assert result.returncode == 2 and "n_images" in result.stderr  # the step's own config still validates it


def test_stage_rejects_paths_and_settings_it_does_not_declare(tmp_path):
    params = _tiny_params(tmp_path)
    result = _cli("ingest", "--params", str(params), "--path", "models/train=/tmp/x")
    assert result.returncode == 2 and "not ['models/train']" in result.stderr
    result = _cli("ingest", "--params", str(params), "--path", "data/raw")
    assert result.returncode == 2 and "DECLARED=ACTUAL" in result.stderr
    result = _cli("ingest", "--params", str(params), "--overrides-json", '{"lr0": 0.1}')
    assert result.returncode == 2 and "takes no tuned settings" in result.stderr
    result = _cli("nosuch", "--params", str(params))
    assert result.returncode == 2 and "no stage 'nosuch'" in result.stderr
    result = _cli("ingest")
    assert result.returncode == 2 and "exactly one of --params" in result.stderr


@pytest.mark.e2e
def test_sagemaker_training_entry_runs_a_trial_and_a_spot_resumable_final_training(tmp_path, tiny_dataset):
    """SageMaker's container contract, laid out as a job sees it under /opt/ml."""
    root = tmp_path / "opt_ml"
    shutil.copytree(tiny_dataset, root / "input/data/data_augmented")
    (root / "input/data/params").mkdir(parents=True)
    shutil.copy(_tiny_params(tmp_path), root / "input/data/params/params.yaml")
    config = root / "input/config"
    config.mkdir(parents=True)
    (root / "model").mkdir()

    (config / "hyperparameters.json").write_text(json.dumps({"mode": "trial", "lr0": "0.02"}))
    trial = sagemaker_training(root)
    assert trial["settings"] == {"lr0": 0.02} and 0.0 <= trial["objective"] <= 1.0
    assert json.loads((root / "model" / "trial.json").read_text())["objective"] == trial["objective"]

    shutil.rmtree(root / "model")
    (config / "hyperparameters.json").write_text(json.dumps({"mode": "final", "lr0": "0.02", "mosaic": "0.5"}))
    sagemaker_training(root)
    assert (root / "model" / "weights" / "best.pt").exists()
    # The run's checkpoints lived in the folder SageMaker syncs to S3 (removed once training finished;
    # resuming from them is tests/e2e/test_spot_resume.py).
    assert (root / "checkpoints").is_dir() and not list((root / "checkpoints").iterdir())

    (config / "hyperparameters.json").write_text(json.dumps({"mode": "sideways"}))
    with pytest.raises(StageError, match="expected 'final' or 'trial'"):  # the job fails ...
        sagemaker_training(root)
    assert "expected 'final' or 'trial'" in (root / "output" / "failure").read_text()

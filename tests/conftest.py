"""Shared fixtures: tiny real data made by our own code, and an isolated MLflow store per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

import defectops  # noqa: F401  (sets the offline environment before anything else imports)

REPO = Path(__file__).resolve().parents[1]
NEU_DET = REPO.parent / "shared" / "datasets" / "neu-det"

# What makes a test slow here: a real training run (the fixtures below train once per session), a real
# engine run (tests/e2e), a browser, or a compiled SageMaker definition. Tests using one of these fixtures
# are marked `e2e` here, so `make test-fast` (pytest -m "not e2e", the inner loop) needs no marker on each
# new test; the few slow ones without such a fixture (a SageMaker compile, a training inside the test, the
# whole NEU-DET set) carry @pytest.mark.e2e themselves.
# The endpoint fuzz's depth: 500 examples in the suite (about 25 s); `HYPOTHESIS_PROFILE=deep` for 5,000.
settings.register_profile("suite", max_examples=500)
settings.register_profile("deep", max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

SLOW_FIXTURES = frozenset({"trained", "evaluated", "classifier", "anomaly_fitted", "segment_fitted",
                           "quantisable_detector", "tiled", "browser",
                           "kfp_cluster", "kfp_local_spec", "kfp_run", "sm_definition", "register_node"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow(tmp_path_factory):
    """Every test talks to its own sqlite MLflow, never the developer's project store."""
    root = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (root / "artifacts").as_uri()
    os.environ["DEFECTOPS_AUDIT_LOG"] = str(root / "audit.jsonl")
    os.environ["DEFECTOPS_AUDIT_KEY"] = "test-audit-signing-key"  # a deployment takes it from its secret store
    os.environ["XDG_CONFIG_HOME"] = str(root / "config")  # login tokens land here, not in the developer's home
    yield root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """24 synthetic 64-px images in the canonical format (read-only for tests: copy before changing)."""
    from defectops.components.ingest.step import IngestConfig, ingest

    out = tmp_path_factory.mktemp("tiny") / "raw"
    ingest(IngestConfig(n_images=24, image_size=64, seed=3), out)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_dataset) -> Path:
    """One real (very short) Ultralytics training run on the tiny dataset, tracked in MLflow."""
    from defectops.components.train.step import TrainConfig, train

    root = tmp_path_factory.mktemp("train")
    train(TrainConfig(epochs=2, imgsz=64, batch=8, workers=0, checkpoint_dir=root / "checkpoints"), tiny_dataset,
          root / "model")
    out = root / "model"
    return out


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, trained, tiny_dataset) -> Path:
    from defectops.components.evaluate.step import EvaluateConfig, evaluate

    out = tmp_path_factory.mktemp("evaluate")
    evaluate(EvaluateConfig(), trained, tiny_dataset, out)
    return out

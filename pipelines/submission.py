"""Submit a training run from Python (notebooks, schedulers) to any engine with the same settings.

`submit(engine="local" | "kfp" | "sagemaker", params={"train": {"epochs": 5}})` takes the
project's params.yaml, applies the overrides, and runs or starts the one DAG on that engine:
- local: written to params.yaml (so DVC records exactly what ran, as `dvc exp run -S` does)
  and run with `dvc repro` in the project folder;
- kfp: with `kfp.host` set, a run on that Kubeflow Pipelines; without, on this machine with
  kfp.local;
- sagemaker: the settings are uploaded to S3, the pipeline upserted and an execution started.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from defectops import identity
from defectops.config import ConfigError, read_params
from defectops.data_versions import after_local_run
from defectops.errors import DefectopsError
from defectops.pipelines.engines import dvc, sagemaker
from defectops.registries import RegistryConfig

ENGINES = ("local", "kfp", "sagemaker")


@dataclass
class Submission:
    engine: str
    run_id: str  # DVC: the registered version's MLflow run; KFP: run id or local root; SageMaker: execution ARN
    status: str  # succeeded, submitted, not registered
    evaluation: dict | None = None
    registration: dict | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict:
        test = (self.evaluation or {}).get("test", {})
        return {"engine": self.engine, "status": self.status, "run_id": self.run_id,
                "test_recall": test.get("recall"), "test_precision": test.get("precision"),
                "threshold": (self.evaluation or {}).get("threshold"),
                "registered_version": (self.registration or {}).get("version")}


def merge(base: dict, overrides: dict, where: str = "params") -> dict:
    """Deep-merge `overrides` into a copy of `base`; an unknown section is an error, not a silent no-op."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key not in merged:
            raise ConfigError(f"{where}: unknown section or setting '{key}' (known: {', '.join(sorted(merged))})")
        if isinstance(value, dict) and isinstance(merged[key], dict) and merged[key]:
            merged[key] = merge(merged[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


@contextmanager
def _in(project: Path):
    previous = Path.cwd()
    os.chdir(project)
    try:
        yield
    finally:
        os.chdir(previous)


def _validate(params_file: Path) -> None:
    """Every step's section must validate before anything runs (a typo fails in a second, not an hour in)."""
    from defectops.config import validate_params

    validate_params(params_file)


def submit(engine: str = "local", params: dict | None = None, project_dir: str | Path = ".",
           trigger: str = "manual", force: bool = False, sagemaker_client=None, s3_client=None,
           trigger_ref: str = "", echo: Callable[[str], None] | None = None) -> Submission:
    """Run (local, kfp.local) or start (KFP cluster, SageMaker) the training DAG with `params` overrides.

    The one way a run starts: the CLI (`defectops pipeline run`), drift retraining, schedules and
    notebooks all come here, so validation, the submitter's identity and the trigger are recorded alike.
    `echo` receives a local run's output lines as DVC prints them (default: silent)."""
    if engine not in ENGINES:
        raise DefectopsError(f"engine '{engine}': expected one of {', '.join(ENGINES)}")
    project = Path(project_dir).resolve()
    params_file = project / "params.yaml"
    merged = merge(read_params(params_file), params or {})
    with _in(project):
        if engine == "local":
            os.environ["DEFECTOPS_TRIGGER_REF"] = trigger_ref
            return _local(params_file, merged, trigger, force, echo or (lambda line: None))
        from defectops.components.validate import profile as gate_profile

        merged = gate_profile.inline(merged, project)  # the container has the settings, not data/gate/
        merged = _with_submitter(merged, engine)
        if engine == "kfp":
            return _kfp(params_file, merged, project)
        return _sagemaker(params_file, merged, trigger, sagemaker_client, s3_client)


def returns_at_once(engine: str, project_dir: str | Path = ".") -> bool:
    """Whether `submit` only starts the run elsewhere (a SageMaker execution, a run on a Kubeflow cluster)
    rather than running it in this process (DVC, kfp.local): a caller decides whether to wait in the background."""
    if engine == "sagemaker":
        return True
    if engine == "kfp":
        from defectops.config import load_step_config
        from defectops.pipelines.engines import kfp

        return bool(load_step_config(kfp.KfpSettings, "kfp", Path(project_dir) / "params.yaml").host)
    return False


def still_running(engine: str, run_id: str, sagemaker_client=None, **_other_clients) -> bool | None:
    """Whether a run `submit` started is still going; None where the engine cannot say (a Kubeflow cluster run
    is only known to its cluster), so the caller falls back on its own rule (a cool-down)."""
    if engine == "sagemaker":
        return sagemaker.execution_running(run_id, sagemaker_client)
    return None


def _with_submitter(merged: dict, engine: str) -> dict:
    """A remote run's register step runs as the engine's account; the person who submitted it travels along."""
    register = {**merged.get("register", {}), "submitted_via": engine}
    register["submitted_by"] = identity.normalise(register.get("submitted_by")) or identity.current_user()
    return {**merged, "register": register}


def _local(params_file: Path, merged: dict, trigger: str, force: bool, echo: Callable[[str], None]) -> Submission:
    if merged != read_params(params_file):
        params_file.write_text(yaml.safe_dump(merged, sort_keys=False))
    _validate(params_file)
    os.environ["DEFECTOPS_TRIGGER"] = trigger
    if not Path("dvc.yaml").exists():
        dvc.write_dvc_yaml()
    dvc.ensure_repo()
    runs = dvc.repro(echo=echo, extra_args=("--force",) if force else ())

    pushed = after_local_run(Path("."), params_file)
    evaluation = json.loads(Path("reports/evaluate/metrics.json").read_text())
    registration = json.loads(Path("reports/register/registration.json").read_text())
    return Submission("local", registration.get("run_id", ""),
                      "succeeded" if registration.get("registered") else "not registered", evaluation, registration,
                      {"stages": [{"name": r.name, "status": r.status, "seconds": r.seconds} for r in runs],
                       "data_push": pushed})


def _kfp(params_file: Path, merged: dict, project: Path) -> Submission:
    import tempfile

    from defectops.config import load_step_config
    from defectops.pipelines.engines import kfp

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(merged, fh)
    try:
        _validate(Path(fh.name))
        settings = load_step_config(kfp.KfpSettings, "kfp", Path(fh.name))
    finally:
        os.unlink(fh.name)
    params_json = json.dumps(merged, sort_keys=True)
    if not settings.host:
        root = project / ".kfp-local" / time.strftime("%Y%m%d-%H%M%S")
        result = kfp.run_local(params_json, root)
        registration = result["registration"]
        status = "succeeded" if registration and registration.get("registered") else "not registered"
        return Submission("kfp", str(root), status, result["evaluation"], registration, {"host": None})
    import kfp as kfp_sdk

    client = kfp_sdk.Client(host=settings.host)
    pipeline = kfp.build_pipeline("cluster", settings.image, params_json, settings.max_parallel_trials,
                                  settings.mlflow_tracking_uri)
    run = client.create_run_from_pipeline_func(pipeline, arguments={"params_yaml": params_json},
                                               experiment_name=settings.experiment)
    return Submission("kfp", run.run_id, "submitted", details={"host": settings.host})


def _registration_outlives_the_job(params: Path, mlflow_tracking_uri: str | None) -> None:
    """An MLflow registry inside a SageMaker job is that job's disk: the registration would vanish with it."""
    from defectops.config import load_step_config

    if load_step_config(RegistryConfig, "registry", params).backend == "mlflow" and not mlflow_tracking_uri:
        raise ConfigError(f"{params}: registry.backend is 'mlflow' but sagemaker.mlflow_tracking_uri is not set, so "
                          "the pipeline's register step would register into its own job's disk and the version "
                          "would be lost; set registry.backend: sagemaker (the model package group) or "
                          "sagemaker.mlflow_tracking_uri to a tracking server every job shares")


def _sagemaker(params_file: Path, merged: dict, trigger: str, sagemaker_client, s3_client) -> Submission:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        run_params = Path(scratch) / "params.yaml"
        run_params.write_text(yaml.safe_dump(merged, sort_keys=False))
        _validate(run_params)
        settings = sagemaker.SageMakerSettings.from_params(run_params)
        _registration_outlives_the_job(run_params, settings.mlflow_tracking_uri)
        uri = sagemaker.upload_params(run_params, settings, s3_client, f"runs/{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        arn = sagemaker.upsert(sagemaker.definition(settings), settings, sagemaker_client)
        execution = sagemaker.start(settings, {"ParamsS3Uri": uri, "Trigger": trigger}, sagemaker_client)
    return Submission("sagemaker", execution, "submitted", details={"pipeline_arn": arn, "params_s3_uri": uri})

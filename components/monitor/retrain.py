"""Close the loop: a drift verdict starts one retraining run, not fifty.

Debounce has two parts. In flight: while a retraining started by us is still running, further
alerts are recorded but start nothing. Cool-down: after a start, alerts within
`cooldown_minutes` start nothing either (a storm of drifted windows is one event). In flight
means the background process for local and kfp runs (a run on a Kubeflow cluster outlives the
process that submitted it: there the cool-down alone holds) and the execution's status on
SageMaker. The retrained model is registered as pending like any other: never promoted.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field

from defectops.config import StepConfig

STATE_FILE = "retrain_state.json"


class RetrainConfig(StepConfig):
    enabled: bool = Field(False, description="Start retraining on drift (else only alert); params.yaml opts in.")
    engine: Literal["local", "kfp", "sagemaker"] = Field(
        "local", description="Where the retraining runs, started like any run (`defectops.submit`): local and kfp "
                             "in a background process, sagemaker as a pipeline execution.")
    cooldown_minutes: float = Field(360, ge=0, description="No new retraining within this time of the last start.")
    webhook_url: str | None = Field(None, description="POSTed the alert as JSON (e.g. a chat or pager hook).")
    project_dir: Path = Field(Path("."), description="The project (its params.yaml) the retraining runs.")
    warm_start: bool = Field(True, description="local and kfp engines: the retraining starts from the champion's "
                                               "weights (train.weights unset) instead of random ones. Not on "
                                               "sagemaker yet: its jobs cannot read the MLflow champion.")
    warm_start_epoch_share: float = Field(0.34, gt=0, le=1, description="... with this share of train.epochs "
                                                                        "(bench/warm_start.py measures enough).")


def _now() -> datetime:
    return datetime.now(UTC)


def _load_state(state_dir: Path) -> dict:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(state_dir: Path, state: dict) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)  # atomic: a crash never leaves half a state file


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child we started stays a zombie until reaped; it is not running.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def in_flight(state: dict, config: RetrainConfig, sagemaker_client=None) -> bool:
    run = state.get("last_run") or {}
    if run.get("engine") in ("local", "kfp"):
        return _pid_alive(run.get("pid"))
    if run.get("engine") == "sagemaker" and run.get("execution_arn"):
        import boto3

        client = sagemaker_client or boto3.client("sagemaker")
        status = client.describe_pipeline_execution(PipelineExecutionArn=run["execution_arn"])
        return status["PipelineExecutionStatus"] in ("Executing", "Stopping")
    return False


def retrain_env(config: RetrainConfig) -> dict[str, str]:
    """The retraining's environment: this interpreter's tools, and for a local run where training starts
    (the train step reads it, so params.yaml stays as committed; kfp is told through its settings)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if config.warm_start and config.engine == "local":
        from defectops.components.train.step import WARM_START_ENV, WARM_START_SHARE_ENV
        from defectops.components.train.weights import CHAMPION

        env.update({WARM_START_ENV: CHAMPION, WARM_START_SHARE_ENV: str(config.warm_start_epoch_share)})
    return env


def warm_start_overrides(config: RetrainConfig) -> dict:
    """What a remote (kfp) retraining changes in its settings to start from the champion; a local one
    is told through its environment instead, so the project's params.yaml is not rewritten."""
    from defectops.components.train.step import TrainConfig
    from defectops.components.train.weights import CHAMPION
    from defectops.config import load_step_config

    train = load_step_config(TrainConfig, "train", Path(config.project_dir) / "params.yaml")
    if not config.warm_start or train.weights:
        return {}
    return {"train": {"weights": CHAMPION, "epochs": max(1, round(train.epochs * config.warm_start_epoch_share))}}


def start_in_background(config: RetrainConfig, trigger_file: Path, log_dir: Path) -> dict:
    """`defectops pipeline run --engine local|kfp --force --trigger drift` in its own session: it trains for
    minutes to hours, longer than a monitor process may live."""
    log_path = (log_dir / f"retrain_{_now().strftime('%Y%m%dT%H%M%S')}.log").resolve()
    command = [sys.executable, "-m", "defectops.cli", "pipeline", "run", "--engine", config.engine, "--force",
               "--trigger", "drift", "--trigger-ref", str(trigger_file.resolve())]
    if config.engine == "kfp" and (overrides := warm_start_overrides(config)):
        command += ["--overrides-json", json.dumps(overrides)]
    env = retrain_env(config)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=config.project_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return {"engine": config.engine, "pid": proc.pid, "log": str(log_path)}


def start_sagemaker(config: RetrainConfig, trigger_file: Path, sagemaker_client=None, s3_client=None) -> dict:
    """A pipeline execution started by `submit` (settings uploaded, definition upserted): returns at once."""
    from defectops.pipelines.submission import submit

    started = submit("sagemaker", project_dir=config.project_dir, trigger="drift", trigger_ref=str(trigger_file),
                     sagemaker_client=sagemaker_client, s3_client=s3_client)
    return {"engine": "sagemaker", "execution_arn": started.run_id}


def send_webhook(url: str, payload: dict) -> str:
    import httpx

    try:
        reply = httpx.post(url, json=payload, timeout=10)
        return f"webhook {reply.status_code}"
    except httpx.HTTPError as exc:  # an alert channel being down must not stop retraining
        return f"webhook failed: {exc}"


def on_drift(trigger: dict, trigger_file: Path, config: RetrainConfig, state_dir: Path,
             sagemaker_client=None, s3_client=None) -> dict:
    """Alert, then start retraining unless one is in flight or the cool-down holds. Returns what happened."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "retrain.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two monitors firing at once still decide one after the other
        return _decide(trigger_file, config, state_dir, sagemaker_client, s3_client, trigger)


def _decide(trigger_file: Path, config: RetrainConfig, state_dir: Path, sagemaker_client, s3_client,
            trigger: dict) -> dict:
    state = _load_state(state_dir)
    outcome: dict = {"time": _now().isoformat(timespec="seconds")}
    if config.webhook_url:
        outcome["alert"] = send_webhook(config.webhook_url, {"event": "drift", **trigger})
    last_start = state.get("last_run", {}).get("started")
    if not config.enabled:
        outcome["action"] = "alert only (retraining disabled)"
    elif in_flight(state, config, sagemaker_client):
        outcome["action"] = "skipped: a retraining run is still in flight"
    elif last_start and _now() - datetime.fromisoformat(last_start) < timedelta(minutes=config.cooldown_minutes):
        outcome["action"] = f"skipped: cool-down of {config.cooldown_minutes:g} min since {last_start}"
    else:
        if config.engine == "sagemaker":
            run = start_sagemaker(config, trigger_file, sagemaker_client, s3_client)
        else:
            run = start_in_background(config, trigger_file, state_dir)
        run["started"] = outcome["time"]
        state["last_run"] = run
        state["runs_started"] = state.get("runs_started", 0) + 1
        outcome["action"] = "retraining started"
        outcome["run"] = run
    state.setdefault("alerts", 0)
    state["alerts"] += 1
    _save_state(state_dir, state)
    return outcome

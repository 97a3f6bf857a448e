"""Close the loop: a drift verdict starts one retraining run, not fifty.

Debounce has two parts. In flight: while a retraining started by us is still running, further
alerts are recorded but start nothing. Cool-down: after a start, alerts within
`cooldown_minutes` start nothing either (a storm of drifted windows is one event). A run that
trains here (DVC, kfp.local) is started in a background process and in flight while it lives; one
that only starts elsewhere is submitted at once and in flight while its engine says so (where an
engine cannot say, the cool-down alone holds). Nothing here knows an engine: `submit` does.
The retrained model is registered as pending like any other: never promoted.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field, field_validator

from defectops.config import StepConfig
from defectops.pipelines.submission import ENGINES, returns_at_once, still_running, submit

STATE_FILE = "retrain_state.json"


class RetrainConfig(StepConfig):
    enabled: bool = Field(False, description="Start retraining on drift (else only alert); params.yaml opts in.")
    engine: str = Field("local", description="Where the retraining runs (an engine of `defectops.submit`), "
                                             "started like any run.")
    cooldown_minutes: float = Field(360, ge=0, description="No new retraining within this time of the last start.")
    webhook_url: str | None = Field(None, description="POSTed the alert as JSON (e.g. a chat or pager hook).")
    project_dir: Path = Field(Path("."), description="The project (its params.yaml) the retraining runs.")
    warm_start: bool = Field(True, description="The retraining starts from the champion's weights (train.weights "
                                               "unset) instead of random ones, on the engines whose jobs read the "
                                               "MLflow champion (local, kfp).")
    warm_start_epoch_share: float = Field(0.34, gt=0, le=1, description="... with this share of train.epochs "
                                                                        "(bench/warm_start.py measures enough).")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"'{value}': expected one of {', '.join(ENGINES)}")
        return value


# The engine told to warm-start through its environment (retrain_env); every other engine through the run's
# settings, its jobs finding the champion in the registry those settings name.
LOCAL_ENGINE = "local"


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


def in_flight(state: dict, clients: dict | None = None) -> bool:
    """A run trained here is in flight while its process lives; one started elsewhere while its engine says so."""
    run = state.get("last_run") or {}
    if run.get("pid"):
        return _pid_alive(run["pid"])
    run_id = run.get("run_id") or run.get("execution_arn")  # execution_arn: state files written before run_id
    return bool(run_id) and bool(still_running(run["engine"], run_id, **(clients or {})))


def retrain_env(config: RetrainConfig) -> dict[str, str]:
    """The retraining's environment: this interpreter's tools, and for a local run where training starts
    (the train step reads it, so params.yaml stays as committed; other engines are told through their settings)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if config.warm_start and config.engine == LOCAL_ENGINE:  # the others: warm_start_overrides
        from defectops.components.train.step import WARM_START_ENV, WARM_START_SHARE_ENV
        from defectops.components.train.weights import CHAMPION

        env.update({WARM_START_ENV: CHAMPION, WARM_START_SHARE_ENV: str(config.warm_start_epoch_share)})
    return env


def warm_start_overrides(config: RetrainConfig) -> dict:
    """What a retraining elsewhere changes in its settings to start from the champion; a local one is told
    through its environment instead (`retrain_env`), so the project's params.yaml is not rewritten."""
    from defectops.components.train.step import TrainConfig
    from defectops.components.train.weights import CHAMPION
    from defectops.config import load_step_config

    if not config.warm_start or config.engine == LOCAL_ENGINE:
        return {}
    train = load_step_config(TrainConfig, "train", Path(config.project_dir) / "params.yaml")
    if train.weights:
        return {}
    return {"train": {"weights": CHAMPION, "epochs": max(1, round(train.epochs * config.warm_start_epoch_share))}}


def start_in_background(config: RetrainConfig, trigger_file: Path, log_dir: Path, kind: str = "drift") -> dict:
    """`defectops pipeline run --engine E --force --trigger KIND` in its own session: a run that trains here
    takes minutes to hours, longer than a monitor process may live."""
    log_path = (log_dir / f"retrain_{_now().strftime('%Y%m%dT%H%M%S')}.log").resolve()
    command = [sys.executable, "-m", "defectops.cli", "pipeline", "run", "--engine", config.engine, "--force",
               "--trigger", kind, "--trigger-ref", str(trigger_file.resolve())]
    if overrides := warm_start_overrides(config):
        command += ["--overrides-json", json.dumps(overrides)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=config.project_dir, env=retrain_env(config), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return {"engine": config.engine, "pid": proc.pid, "log": str(log_path)}


def start(config: RetrainConfig, trigger_file: Path, log_dir: Path, clients: dict | None = None,
          kind: str = "drift") -> dict:
    """Submitted at once where the run only starts elsewhere; else in the background. `kind`: why (drift, or
    disagreement: inspectors overruling the champion), tagged on the version it registers."""
    if not returns_at_once(config.engine, config.project_dir):
        return start_in_background(config, trigger_file, log_dir, kind)
    started = submit(config.engine, params=warm_start_overrides(config) or None, project_dir=config.project_dir,
                     trigger=kind, trigger_ref=str(trigger_file), **(clients or {}))
    return {"engine": config.engine, "run_id": started.run_id}


def send_webhook(url: str, payload: dict) -> str:
    import httpx

    try:
        reply = httpx.post(url, json=payload, timeout=10)
        return f"webhook {reply.status_code}"
    except httpx.HTTPError as exc:  # an alert channel being down must not stop retraining
        return f"webhook failed: {exc}"


def on_drift(trigger: dict, trigger_file: Path, config: RetrainConfig, state_dir: Path,
             clients: dict | None = None) -> dict:
    """Alert, then start retraining unless one is in flight or the cool-down holds. Returns what happened."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "retrain.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two monitors firing at once still decide one after the other
        return _decide(trigger, trigger_file, config, state_dir, clients)


def _decide(trigger: dict, trigger_file: Path, config: RetrainConfig, state_dir: Path, clients: dict | None) -> dict:
    state = _load_state(state_dir)
    outcome: dict = {"time": _now().isoformat(timespec="seconds")}
    if config.webhook_url:
        outcome["alert"] = send_webhook(config.webhook_url, {"event": trigger.get("kind", "drift"), **trigger})
    last_start = state.get("last_run", {}).get("started")
    if not config.enabled:
        outcome["action"] = "alert only (retraining disabled)"
    elif in_flight(state, clients):
        outcome["action"] = "skipped: a retraining run is still in flight"
    elif last_start and _now() - datetime.fromisoformat(last_start) < timedelta(minutes=config.cooldown_minutes):
        outcome["action"] = f"skipped: cool-down of {config.cooldown_minutes:g} min since {last_start}"
    else:
        run = start(config, trigger_file, state_dir, clients, trigger.get("kind", "drift"))
        run["started"] = outcome["time"]
        state["last_run"] = run
        state["runs_started"] = state.get("runs_started", 0) + 1
        outcome["action"] = "retraining started"
        outcome["run"] = run
    state.setdefault("alerts", 0)
    state["alerts"] += 1
    _save_state(state_dir, state)
    return outcome

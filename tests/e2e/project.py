"""A throw-away defectops project on a tiny config, and the offline environment its processes run in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from defectops.pipelines.engines.dvc import ensure_repo, write_dvc_yaml

REPO = Path(__file__).resolve().parents[2]
NETGUARD = Path(__file__).resolve().parent / "netguard"


def make_project(root: Path, overrides: dict[str, dict], init_dvc: bool = False) -> Path:
    """Copy the code the DVC stages depend on, write a tiny params.yaml and dvc.yaml, git init."""
    # data/gate is a validate dependency; a profile learned in this checkout stays behind.
    for folder in ("components", "defectops", "pipelines", "data/gate"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "profile.json"))
    shutil.copy(REPO / ".dvcignore", root)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_dvc_yaml(root / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    if init_dvc:
        ensure_repo(root)
    return root


def project_env(root: Path) -> dict:
    """The project's own MLflow store, the venv's scripts on PATH, and the network guard in every process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "DEFECTOPS_ARTIFACT_ROOT", "DEFECTOPS_AUDIT_LOG")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), env.get("PYTHONPATH")]))
    env["DEFECTOPS_NET_LOG"] = str(root / "network_attempts.jsonl")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run_on_kfp(root: Path) -> dict:
    """`defectops pipeline run --engine kfp` in the project; its summary, printed after the task logs."""
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "pipeline", "run", "--engine", "kfp"], cwd=root,
                            env=project_env(root), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(result.stdout[result.stdout.rindex('{\n  "engine"'):])


def version_tags(root: Path, version: str = "1") -> list[str]:
    """A registered version's task and approval tags, then its aliases (a pending one may be the challenger),
    read from the project's own registry by a process of its own."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    script = (f"from defectops import registry; v = registry.get_version('defectops-detector', '{version}'); "
              "print(v.tags['task'], v.tags['approval'], *v.aliases)")
    check = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    return check.stdout.split()

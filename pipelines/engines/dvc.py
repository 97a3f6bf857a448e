"""The local engine: render the DAG as dvc.yaml and run it with `dvc repro`.

DVC gives caching (unchanged stages are skipped), the dataset's content md5 as its version id,
and a lock file that pins every stage's inputs and outputs.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from defectops.config import read_params
from defectops.dvc_command import argv, dvc, environment
from defectops.import_graph import source_files
from defectops.pipelines.dag import TRAINING_DAG, Stage

REPO = Path(__file__).resolve().parents[2]  # the checkout whose files DVC watches
HEADER = "# Generated from pipelines/dag.py by 'defectops pipeline compile --engine dvc'. Do not edit.\n"


def source_deps(stage: Stage, root: Path = REPO) -> list[str]:
    """The source a stage's command can run: its component's folder and every other project file its
    imports reach, so editing, say, the tiling module re-runs training and evaluation."""
    own = f"components/{stage.name}"
    files = source_files(f"defectops.components.{stage.name}.cli", root)
    return [own, *(f for f in files if not f.startswith(own + "/"))]


def render(stages: tuple[Stage, ...] = TRAINING_DAG, params: dict | None = None) -> dict:
    """`params`: the project's settings, for data paths a stage reads by setting (ingest.extra_sources)."""
    rendered = {}
    for s in stages:
        spec: dict = {"cmd": s.command}
        deps = [*source_deps(s), *s.code, *s.deps, *s.deps_in(params or {})]
        if deps:
            spec["deps"] = deps
        if s.params:
            spec["params"] = list(s.params)
        if s.outs:
            spec["outs"] = list(s.outs)
        rendered[s.name] = spec
    return {"stages": rendered}


def dvc_yaml_text(stages: tuple[Stage, ...] = TRAINING_DAG, params: dict | None = None) -> str:
    return HEADER + yaml.safe_dump(render(stages, params), sort_keys=False, width=120)


def write_dvc_yaml(path: Path = Path("dvc.yaml"), stages: tuple[Stage, ...] = TRAINING_DAG) -> Path:
    """dvc.yaml for the project it lies in, reading that project's params.yaml beside it."""
    Path(path).write_text(dvc_yaml_text(stages, read_params(Path(path).parent / "params.yaml")))
    return Path(path)


def ensure_repo(root: Path = Path(".")) -> None:
    """Initialise DVC (analytics off) if the project has no .dvc folder yet."""
    root = Path(root)
    if not (root / ".dvc").exists():
        no_scm = [] if (root / ".git").exists() else ["--no-scm"]
        dvc("init", "--quiet", *no_scm, cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    dvc("config", "core.autostage", "false", cwd=root)


@dataclass
class StageRun:
    name: str
    status: str  # ran, skipped, restored from run cache, failed
    seconds: float


_RUNNING = re.compile(r"Running stage '([^']+)'")
_SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
_RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")


def repro(root: Path = Path("."), echo=print, extra_args: tuple[str, ...] = ()) -> list[StageRun]:
    """Run `dvc repro`, streaming its output, and time each stage from DVC's own progress lines."""
    proc = subprocess.Popen(argv("repro", *extra_args), cwd=root, env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    runs: list[StageRun] = []
    current: tuple[str, float] | None = None

    def close_current(now: float) -> None:
        nonlocal current
        if current:
            runs.append(StageRun(current[0], "ran", round(now - current[1], 2)))
            current = None

    assert proc.stdout is not None
    for line in proc.stdout:
        echo(line.rstrip("\n"))
        now = time.perf_counter()
        if m := _RUNNING.search(line):
            close_current(now)
            current = (m.group(1), now)
        elif m := _SKIPPED.search(line):
            close_current(now)
            runs.append(StageRun(m.group(1), "skipped", 0.0))
        elif m := _RESTORED.search(line):
            close_current(now)
            runs.append(StageRun(m.group(1), "restored from run cache", 0.0))
    code = proc.wait()
    close_current(time.perf_counter())
    if code != 0:
        failed = runs[-1].name if runs else "?"
        if runs:
            runs[-1].status = "failed"
        raise subprocess.CalledProcessError(code, f"dvc repro (stage '{failed}' failed)")
    return runs

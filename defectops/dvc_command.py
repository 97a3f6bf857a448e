"""Running DVC's CLI from this interpreter: the engine, dataset versions and the inspectors' export all call
it, with the same environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def environment() -> dict[str, str]:
    """Stage commands call `defectops`: make sure this interpreter's scripts are on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def argv(*args: str) -> list[str]:
    """`dvc ARGS` as `python -m dvc`: the DVC installed beside defectops, whatever PATH holds."""
    return [sys.executable, "-m", "dvc", *args]


def dvc(*args: str, cwd: Path = Path("."), check: bool = True) -> subprocess.CompletedProcess:
    """`dvc ARGS` in `cwd`, output captured."""
    return subprocess.run(argv(*args), cwd=cwd, env=environment(), check=check, capture_output=True, text=True)

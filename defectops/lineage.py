"""Lineage facts a model version carries: the dataset's DVC md5 and the code's git commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - DVC's content address, not a security hash
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_dir_md5(path: Path) -> str:
    """The md5 DVC 3 records for a directory output (`<hex>.dir`), computed without DVC.

    Same value on every engine, so a model trained on Kubeflow or SageMaker names its dataset
    version exactly as `dvc.lock` would.
    """
    root = Path(path)
    entries = [{"md5": _md5_file(p), "relpath": p.relative_to(root).as_posix()}
               for p in sorted(root.rglob("*")) if p.is_file()]
    entries.sort(key=lambda e: e["relpath"])
    blob = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(blob).hexdigest() + ".dir"  # noqa: S324


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"

"""A throwaway copy of the project for benches: they never touch the working tree's data or registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def copy_project(prefix: str, params_update: dict | None = None) -> Path:
    """Copy the code, DAG and params into a fresh git folder; `params_update` merges into sections."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    # data/gate is a validate dependency; a profile learned in this checkout stays behind.
    for folder in ("components", "defectops", "pipelines", "data/gate"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "profile.json"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root)
    if params_update:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in params_update.items():
            params[section].update(values)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def scratch_work(prefix: str) -> Path:
    """A fresh work folder with its own MLflow store and artefact root: a bench never writes into the project's."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()
    return work


def project_env() -> dict[str, str]:
    """This interpreter's tools first on PATH; no tracking settings leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "DEFECTOPS_ARTIFACT_ROOT", "DEFECTOPS_AUDIT_LOG")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def defectops(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "defectops.cli", *args], cwd=root, env=project_env(),
                          check=True, **kwargs)


def print_table(rows: list[tuple[str, object]], header: tuple[str, ...] = ("measure", "value")) -> None:
    """A markdown table, the form bench numbers are pasted into READMEs and closing notes in."""
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def keep_or_remove(folder: Path, keep: bool) -> None:
    if keep:
        print(f"kept at {folder}")
    else:
        shutil.rmtree(folder)


def image_ap(eval_dir: Path) -> float:
    """Image-level average precision on the test split, from the evaluate step's per_image.csv."""
    import csv

    from sklearn.metrics import average_precision_score

    with open(eval_dir / "per_image.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    return float(average_precision_score([int(r["is_defect"]) for r in rows], [float(r["score"]) for r in rows]))


def precision_at_recall(scores: np.ndarray, truth: np.ndarray, recall: float) -> float | None:
    """Image-level precision at the highest threshold whose test recall is >= `recall`."""
    if truth.all() or not truth.any():
        return None  # every image defective (NEU-DET) or none: precision says nothing
    order = np.argsort(-scores)
    hits = np.cumsum(truth[order])
    reached = np.nonzero(hits / truth.sum() >= recall)[0][0]
    return float(hits[reached] / (reached + 1))

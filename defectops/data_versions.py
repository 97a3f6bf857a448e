"""Dataset versions: DVC tracks the data, git records which version each commit used.

A version is the md5 DVC gives a dataset folder (`data/raw` as imported, `data/validated` as
trained on) in a committed `dvc.lock`. The remote (a local folder by default, an S3 URL in cloud
configs) keeps every version's files; a model's registry entry names the `data/validated` md5 it
was trained on, so `defectops data versions` can say which models came from which data.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from pydantic import Field

from defectops.config import StepConfig
from defectops.dvc_command import dvc
from defectops.errors import DefectopsError
from defectops.registries import open_registry_from

TRACKED = ("data/raw", "data/validated")


class DataSettings(StepConfig):
    remote_name: str = Field("storage", min_length=1)
    remote_url: str = Field(".dvc-storage", description="A folder (relative to the project; use shared storage for "
                                                         "real use) or a cloud URL such as s3://bucket/defectops/data.")
    push_after_run: bool = Field(True, description="Push every tracked dataset version to the remote after a run.")


class DataVersionError(DefectopsError):
    """A version that does not exist, or a project that is not a git + DVC repository."""


@dataclass
class DatasetVersion:
    rev: str  # git commit, or 'workspace' for an uncommitted dvc.lock
    date: str
    message: str
    datasets: dict[str, dict] = field(default_factory=dict)  # path -> {md5, files, size, in_remote}
    models: list[str] = field(default_factory=list)  # registered model versions trained on it


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise DataVersionError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result


def remote_url(root: Path, settings: DataSettings) -> str:
    """Cloud URLs as given; a folder resolved against the project (DVC reads relative paths from .dvc/)."""
    if "://" in settings.remote_url:
        return settings.remote_url
    return str((Path(root) / settings.remote_url).resolve())


def configure_remote(root: Path, settings: DataSettings) -> str:
    """Make the configured remote DVC's default (idempotent)."""
    url = remote_url(root, settings)
    dvc("remote", "add", "--default", "--force", settings.remote_name, url, cwd=root)
    return url


def push(root: Path, settings: DataSettings) -> str:
    """Send the tracked datasets' files to the remote; returns DVC's summary line."""
    configure_remote(root, settings)
    targets = [t for t in TRACKED if (Path(root) / t).exists()]
    result = dvc("push", *targets, cwd=root, check=False)
    if result.returncode != 0:
        raise DataVersionError(f"dvc push failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return (result.stdout.strip().splitlines() or ["nothing to push"])[-1]


def _outs(lock_text: str) -> dict[str, dict]:
    lock = yaml.safe_load(lock_text) or {}
    found = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") in TRACKED:
                found[out["path"]] = {"md5": out.get("md5"), "files": out.get("nfiles"), "size": out.get("size")}
    return found


def _in_local_remote(url: str, md5: str | None) -> bool | None:
    """Whether a local remote holds the version's directory listing (None: a cloud remote, not checked)."""
    if not md5 or "://" in url:
        return None
    return (Path(url) / "files" / "md5" / md5[:2] / md5[2:]).exists()


def list_versions(root: Path, settings: DataSettings, models: dict[str, list[str]] | None = None
                  ) -> list[DatasetVersion]:
    """Newest first: the uncommitted workspace (if its dvc.lock differs), then each commit that changed it."""
    root = Path(root)
    if not (root / ".git").exists():
        raise DataVersionError(f"{root}: not a git repository; dataset versions are the commits of dvc.lock")
    url, models = remote_url(root, settings), models or {}
    versions = []
    lock = root / "dvc.lock"
    head = _git(root, "show", "HEAD:dvc.lock", check=False)
    if lock.exists() and (head.returncode != 0 or head.stdout != lock.read_text()):
        versions.append(DatasetVersion("workspace", "", "uncommitted dvc.lock", _outs(lock.read_text())))
    log = _git(root, "log", "--format=%H%x09%cI%x09%s", "--", "dvc.lock", check=False).stdout
    for line in filter(None, log.splitlines()):
        rev, date, message = line.split("\t", 2)
        shown = _git(root, "show", f"{rev}:dvc.lock", check=False)
        if shown.returncode == 0:
            versions.append(DatasetVersion(rev[:10], date, message, _outs(shown.stdout)))
    for version in versions:
        for info in version.datasets.values():
            info["in_remote"] = _in_local_remote(url, info["md5"])
        version.models = models.get((version.datasets.get("data/validated") or {}).get("md5"), [])
    return [v for v in versions if v.datasets]


def registered_models_by_dataset(model_name: str, params: Path = Path("params.yaml")) -> dict[str, list[str]]:
    """dataset md5 -> ['name vN (approval)', ...] from the model registry params.yaml names."""
    found: dict[str, list[str]] = {}
    try:
        for v in open_registry_from(params, model_name).versions():
            found.setdefault(v.tags.get("dataset_md5", ""), []).append(
                f"{model_name} v{v.version} ({v.tags.get('approval', '?')})")
    except Exception:  # noqa: BLE001 - no registry yet: versions are still listed, without models
        return {}
    return found


def checkout(root: Path, rev: str, settings: DataSettings) -> dict[str, dict]:
    """Make `rev`'s dataset versions the workspace's: its dvc.lock and params.yaml, then the data
    (from the local cache, else pulled from the remote). Code stays as it is."""
    root = Path(root)
    if _git(root, "cat-file", "-e", f"{rev}:dvc.lock", check=False).returncode != 0:
        raise DataVersionError(f"{rev}: no dvc.lock in that commit (see 'defectops data versions')")
    _git(root, "checkout", rev, "--", "dvc.lock", "params.yaml")
    configure_remote(root, settings)
    targets = [t for t in TRACKED if t in _outs((root / "dvc.lock").read_text())]
    result = dvc("checkout", *targets, cwd=root, check=False)
    if result.returncode != 0:  # not in the local cache: fetch it
        pulled = dvc("pull", *targets, cwd=root, check=False)
        if pulled.returncode != 0:
            raise DataVersionError(f"{rev}: its data is neither in the cache nor on the remote "
                                   f"({(pulled.stderr or pulled.stdout).strip()[-1000:]})")
    return _outs((root / "dvc.lock").read_text())


def as_json(versions: list[DatasetVersion]) -> str:
    return json.dumps([asdict(v) for v in versions], indent=2)


def after_local_run(root: Path, params_file: Path) -> str | None:
    """Push the run's dataset versions when the settings say so; the remote is configured either way."""
    from defectops.config import load_step_config

    settings = load_step_config(DataSettings, "data", params_file)
    if not settings.push_after_run:
        configure_remote(root, settings)
        return None
    return push(root, settings)

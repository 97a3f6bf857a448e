"""The model registry workflow (MLflow): register as pending, approve by a named human.

Aliases carry the deployment state: `challenger` is the newest pending version, `champion`
is what the endpoint serves. Tags carry the evidence and the decision.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from defectops.errors import RefusedError
from defectops.tracking import tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(RefusedError):
    """A registry action is not allowed or refers to something that does not exist."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    source: str
    run_id: str
    tags: dict
    aliases: list[str]


def client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=tracking_uri())


def current_user() -> str:
    return os.environ.get("DEFECTOPS_USER") or getpass.getuser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _info(mv) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), mv.source, mv.run_id, dict(mv.tags), list(mv.aliases or []))


def register_pending(name: str, source: str, run_id: str, tags: dict[str, str]) -> VersionInfo:
    """New version, tagged approval=pending, alias challenger. Never approved automatically."""
    c = client()
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description="Defect detector registered by the defectops pipeline.")
    all_tags = {**{k: str(v) for k, v in tags.items()}, "approval": "pending", "registered_at": _now()}
    all_tags.setdefault("submitted_by", current_user())
    mv = c.create_model_version(name, source=source, run_id=run_id, tags=all_tags)
    c.set_registered_model_alias(name, CHALLENGER, mv.version)
    return get_version(name, str(mv.version))


def get_version(name: str, version: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        return _info(client().get_model_version(name, str(version)))
    except MlflowException:
        raise RegistryError(f"model '{name}' has no version {version} (see 'defectops registry list')") from None


def by_alias(name: str, alias: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        return _info(client().get_model_version_by_alias(name, alias))
    except MlflowException:
        return None


def list_versions(name: str) -> list[VersionInfo]:
    versions = client().search_model_versions(f"name='{name}'")
    return sorted((_info(v) for v in versions), key=lambda v: int(v.version))


def approve(name: str, version: str, by: str, reason: str = "") -> VersionInfo:
    """A human approves: the version becomes champion. The submitter may not approve their own run."""
    if not by or not by.strip():
        raise RegistryError("approval needs the approver's name (--by NAME)")
    info = get_version(name, version)
    status = info.tags.get("approval")
    if status != "pending":
        raise RegistryError(f"{name} v{version} is '{status}', only 'pending' versions can be approved")
    if info.tags.get("submitted_by") == by:
        raise RegistryError(f"four-eyes rule: {by} submitted {name} v{version} and cannot also approve it")
    c = client()
    for key, value in {"approval": "approved", "approved_by": by, "approved_at": _now(),
                       "approval_reason": reason}.items():
        c.set_model_version_tag(name, version, key, value)
    previous = by_alias(name, CHAMPION)
    if previous is not None and previous.version != version:
        c.set_model_version_tag(name, previous.version, "approval", "superseded")
    c.set_registered_model_alias(name, CHAMPION, version)
    challenger = by_alias(name, CHALLENGER)
    if challenger is not None and challenger.version == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    return get_version(name, version)

"""The model registry workflow (MLflow): register as pending, approve by a named human.

Aliases carry the deployment state: `challenger` is the newest pending version, `champion`
is what the endpoint serves. Tags carry the evidence and the decision.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
    return datetime.now(UTC).isoformat(timespec="seconds")


def _info(mv) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), mv.source, mv.run_id, dict(mv.tags), list(mv.aliases or []))


def _record(action: str, actor: str, name: str, version: str, **details) -> None:
    from defectops import audit

    audit.append(action, actor, name, version, **details)


def _set_tags(name: str, version: str, tags: dict[str, str]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, str(value))


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
    _record("register", all_tags["submitted_by"], name, str(mv.version), run_id=run_id,
            dataset_md5=all_tags.get("dataset_md5"), weights_sha256=all_tags.get("weights_sha256"))
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
    from dataclasses import replace

    from mlflow.exceptions import MlflowException

    c = client()
    try:
        aliases = c.get_registered_model(name).aliases or {}
    except MlflowException:
        return []
    versions = sorted((_info(v) for v in c.search_model_versions(f"name='{name}'")), key=lambda v: int(v.version))
    # Search results carry no aliases in MLflow; the registered model does.
    return [replace(v, aliases=sorted(a for a, num in aliases.items() if str(num) == v.version)) for v in versions]


def fetch_weights(info: VersionInfo, dest: Path) -> Path:
    """Download a version's weights and check them against the sha256 recorded at registration."""
    import mlflow

    from defectops.dataset import sha256_file

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(dest)))
    weights = local / "best.pt" if local.is_dir() else local
    expected = info.tags.get("weights_sha256")
    actual = sha256_file(weights)
    if expected and actual != expected:
        raise RegistryError(f"{weights}: sha256 {actual} does not match the registry's {expected} for "
                            f"{info.name} v{info.version}; refusing to use a modified artefact")
    return weights


def champion_history(name: str) -> list[str]:
    """Versions that have been champion, oldest first; rollback walks it backwards."""
    from mlflow.exceptions import MlflowException

    try:
        raw = client().get_registered_model(name).tags.get("champion_history", "[]")
    except MlflowException:
        return []
    return [str(v) for v in json.loads(raw)]


def _set_history(name: str, history: list[str]) -> None:
    client().set_registered_model_tag(name, "champion_history", json.dumps(history))


def _require_person(by: str, reason: str, action: str) -> None:
    if not by or not by.strip():
        raise RegistryError(f"{action} needs the name of the person acting (--by NAME)")
    if not reason or not reason.strip():
        raise RegistryError(f"{action} needs a reason (--reason TEXT); it is kept in the quality record")


def check_decision(name: str, version: str, status: str | None, submitted_by: str | None, by: str, reason: str,
                   action: str) -> None:
    """The rules every registry backend enforces before approving or rejecting a version."""
    _require_person(by, reason, "approval" if action == "approved" else "rejection")
    if status != "pending":
        raise RegistryError(f"{name} v{version} is '{status}'; only 'pending' versions can be {action}")
    if action == "approved" and submitted_by == by:
        raise RegistryError(f"four-eyes rule: {by} submitted {name} v{version} and cannot also approve it; "
                            "another person must review it")


def _decidable(name: str, version: str, by: str, reason: str, action: str) -> VersionInfo:
    info = get_version(name, version)
    check_decision(name, version, info.tags.get("approval"), info.tags.get("submitted_by"), by, reason, action)
    return info


def _drop_challenger(name: str, version: str) -> None:
    challenger = by_alias(name, CHALLENGER)
    if challenger is not None and challenger.version == str(version):
        client().delete_registered_model_alias(name, CHALLENGER)


def approve(name: str, version: str, by: str, reason: str) -> VersionInfo:
    """A human approves: the version becomes champion. The submitter may not approve their own run."""
    _decidable(name, version, by, reason, "approved")
    _set_tags(name, version, {"approval": "approved", "approved_by": by, "approved_at": _now(),
                              "approval_reason": reason})
    previous = by_alias(name, CHAMPION)
    if previous is not None and previous.version != version:
        _set_tags(name, previous.version, {"approval": "superseded"})
    client().set_registered_model_alias(name, CHAMPION, version)
    _drop_challenger(name, version)
    _set_history(name, [*champion_history(name), str(version)])
    _record("approve", by, name, version, reason=reason,
            previous_champion=previous.version if previous else None)
    return get_version(name, version)


def approve_canary(name: str, version: str, by: str, reason: str) -> VersionInfo:
    """Clear a pending challenger to take a small share of live traffic (serve.canary_share).

    Same four-eyes rule as promotion: an unreviewed model never sees production parts.
    """
    _decidable(name, version, by, reason, "approved")
    challenger = by_alias(name, CHALLENGER)
    if challenger is None or challenger.version != str(version):
        raise RegistryError(f"{name} v{version} is not the challenger; only the challenger can run as canary")
    _set_tags(name, version, {"canary": "approved", "canary_by": by, "canary_at": _now(), "canary_reason": reason})
    _record("approve_canary", by, name, version, reason=reason)
    return get_version(name, version)


def reject(name: str, version: str, by: str, reason: str) -> VersionInfo:
    """A human rejects a pending version; it can never be served."""
    _decidable(name, version, by, reason, "rejected")
    _set_tags(name, version, {"approval": "rejected", "rejected_by": by, "rejected_at": _now(),
                              "rejection_reason": reason})
    _drop_challenger(name, version)
    _record("reject", by, name, version, reason=reason)
    return get_version(name, version)


def rollback(name: str, by: str, reason: str) -> VersionInfo:
    """Put the previous champion back in one step; the current one is marked rolled_back."""
    _require_person(by, reason, "rollback")
    history = champion_history(name)
    current = by_alias(name, CHAMPION)
    if current is None or len(history) < 2:
        raise RegistryError(f"model '{name}' has no previous champion to roll back to "
                            f"(champion history: {history or 'empty'})")
    restored = history[-2]
    _set_tags(name, current.version, {"approval": "rolled_back", "rolled_back_by": by,
                                      "rolled_back_at": _now(), "rollback_reason": reason})
    _set_tags(name, restored, {"approval": "approved"})
    client().set_registered_model_alias(name, CHAMPION, restored)
    _set_history(name, history[:-1])
    _record("rollback", by, name, restored, reason=reason, rolled_back=current.version)
    return get_version(name, restored)

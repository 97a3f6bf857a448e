"""The model registry workflow (MLflow): register as pending, approve by a named human.

Aliases carry the deployment state: `challenger` is the newest pending version, `champion`
is what the endpoint serves. Tags carry the evidence and the decision.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from defectops import approval, audit, identity
from defectops.approval import RegistryError
from defectops.tracking import tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_HEAD_TAG = "audit_head"
__all__ = ["RegistryError", "VersionInfo", "approve", "reject", "rollback", "register_pending"]


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _info(mv) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), mv.source, mv.run_id, dict(mv.tags), list(mv.aliases or []))


def _anchor(name: str):
    """After every audit entry about a model, the registry keeps its head (see `audit`)."""
    def keep(entry: dict) -> None:
        client().set_registered_model_tag(name, AUDIT_HEAD_TAG, audit.head(entry))
    return keep


def _recorded(action: str, actor: str, name: str, version: str, **details):
    return audit.recorded(action, actor, name, version, anchor=_anchor(name), **details)


def audit_anchors(name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {name: client().get_registered_model(name).tags.get(AUDIT_HEAD_TAG, "")}
    except MlflowException:
        return {}


def audited_entries(name: str, anchors: dict[str, str] | None = None) -> list[dict]:
    """The verified audit chain, checked against `anchors` (default: this MLflow model's, read first: the log is
    written first)."""
    return audit.verified_entries(anchors=audit_anchors(name) if anchors is None else anchors)


def served_refusal(info: VersionInfo, role: str = CHAMPION, anchors: dict[str, str] | None = None) -> str | None:
    """Why `info` must not be served in `role` (champion or canary), or None; the rule is `approval`'s.

    `anchors`: the audit heads the version's registry keeps (default: this MLflow registry's)."""
    try:
        entries = audited_entries(info.name, anchors)
    except audit.AuditError as exc:
        return f"the audit log does not verify, so no approval can be trusted: {exc}"
    refusal = approval.champion_refusal if role == CHAMPION else approval.canary_refusal
    return refusal(info.name, info.version, info.tags, entries)


def audited_champion(name: str, anchors: dict[str, str] | None = None) -> str | None:
    """The version the verified audit log last made champion; None without one (or when the log fails)."""
    try:
        entries = audited_entries(name, anchors)
    except audit.AuditError:
        return None
    return approval.audited_champion(entries, name)


def set_tags(name: str, version: str, tags: dict[str, str]) -> None:
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
    all_tags["submitted_by"] = identity.normalise(all_tags.get("submitted_by") or identity.current_user())
    mv = c.create_model_version(name, source=source, run_id=run_id, tags=all_tags)
    c.set_registered_model_alias(name, CHALLENGER, mv.version)
    entry = audit.append("register", all_tags["submitted_by"], name, str(mv.version), run_id=run_id,
                         os_user=getpass.getuser(), submitted_via=all_tags.get("submitted_via"),
                         dataset_md5=all_tags.get("dataset_md5"), weights_sha256=all_tags.get("weights_sha256"),
                         feedback_labellers=all_tags.get("feedback_labellers", ""),
                         evidence_warning=all_tags.get("evidence_warning", ""))
    _anchor(name)(entry)
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

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(dest)))
    return verified_weights(local / "best.pt" if local.is_dir() else local, info)


def verified_weights(weights: Path, info: VersionInfo) -> Path:
    """`weights` if they hash to the sha256 recorded at registration (any registry); else refused."""
    from defectops.dataset import sha256_file

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


def _decidable(name: str, version: str, by: str, reason: str, action: str,
               acknowledge: bool = False) -> tuple[str, dict]:
    """The normalised decider once the rules allow the decision (a broken audit log refuses), and what the
    audit entry adds: the evidence warning the approver acknowledged, if any."""
    info, entries = get_version(name, version), audited_entries(name)
    submitted = approval.submitters(info.tags, entries, name, version)
    warning = approval.evidence_warning(info.tags, entries, name, version)
    by = approval.check_decision(name, version, info.tags.get("approval"), submitted, by, reason, action,
                                 warning, acknowledge)
    return by, approval.acknowledgement(warning, action)


def _drop_challenger(name: str, version: str) -> None:
    challenger = by_alias(name, CHALLENGER)
    if challenger is not None and challenger.version == str(version):
        client().delete_registered_model_alias(name, CHALLENGER)


def approve(name: str, version: str, by: str, reason: str, acknowledge: bool = False) -> VersionInfo:
    """A human approves: the version becomes champion. The submitter may not approve their own run; a version
    whose evidence cannot show the recall target needs `acknowledge`."""
    by, acknowledged = _decidable(name, version, by, reason, "approved", acknowledge)
    previous = by_alias(name, CHAMPION)
    with _recorded("approve", by, name, version, reason=reason,
                   previous_champion=previous.version if previous else None, **acknowledged):
        set_tags(name, version, {"approval": "approved", "approved_by": by, "approved_at": _now(),
                                  "approval_reason": reason})
        if previous is not None and previous.version != version:
            set_tags(name, previous.version, {"approval": "superseded"})
        client().set_registered_model_alias(name, CHAMPION, version)
        _drop_challenger(name, version)
        _set_history(name, [*champion_history(name), str(version)])
    return get_version(name, version)


def approve_canary(name: str, version: str, by: str, reason: str, acknowledge: bool = False) -> VersionInfo:
    """Clear a pending challenger to take a small share of live traffic (serve.canary_share).

    Same rules as promotion (four eyes, the evidence warning): an unreviewed model never sees production parts.
    """
    by, acknowledged = _decidable(name, version, by, reason, "approved", acknowledge)
    challenger = by_alias(name, CHALLENGER)
    if challenger is None or challenger.version != str(version):
        raise RegistryError(f"{name} v{version} is not the challenger; only the challenger can run as canary")
    with _recorded("approve_canary", by, name, version, reason=reason, **acknowledged):
        set_tags(name, version, {"canary": "approved", "canary_by": by, "canary_at": _now(),
                                  "canary_reason": reason})
    return get_version(name, version)


def reject(name: str, version: str, by: str, reason: str) -> VersionInfo:
    """A human rejects a pending version; it can never be served."""
    by, _ = _decidable(name, version, by, reason, "rejected")
    with _recorded("reject", by, name, version, reason=reason):
        set_tags(name, version, {"approval": "rejected", "rejected_by": by, "rejected_at": _now(),
                                  "rejection_reason": reason})
        _drop_challenger(name, version)
    return get_version(name, version)


def rollback(name: str, by: str, reason: str) -> VersionInfo:
    """Put the previous champion back in one step; the current one is marked rolled_back.

    The version restored must itself carry an audited approval by a second person: the history tag
    is editable in the registry, the signed log is not.
    """
    by = identity.require_person(by, "rollback")
    if not reason or not reason.strip():
        raise RegistryError("rollback needs a reason (--reason TEXT); it is kept in the quality record")
    history = champion_history(name)
    current = by_alias(name, CHAMPION)
    if current is None or len(history) < 2:
        raise RegistryError(f"model '{name}' has no previous champion to roll back to "
                            f"(champion history: {history or 'empty'})")
    restored = history[-2]
    entries = audited_entries(name)
    info = get_version(name, restored)
    if not approval.approved_by_another(entries, name, restored,
                                        approval.submitters(info.tags, entries, name, restored)):
        raise RegistryError(f"{name} v{restored} has no audited approval by a second person; it cannot be put "
                            "back on the line by a rollback")
    with _recorded("rollback", by, name, restored, reason=reason, rolled_back=current.version):
        set_tags(name, current.version, {"approval": "rolled_back", "rolled_back_by": by,
                                          "rolled_back_at": _now(), "rollback_reason": reason})
        set_tags(name, restored, {"approval": "approved"})
        client().set_registered_model_alias(name, CHAMPION, restored)
        _set_history(name, history[:-1])
    return get_version(name, restored)

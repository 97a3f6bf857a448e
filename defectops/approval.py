"""The four-eyes rules, in one place: who may decide, and what may be served.

Pure functions over a version's tags and the verified audit entries, so every registry backend,
the deploy step and the endpoint apply exactly the same rule. Tags alone are never trusted for
serving: anyone with registry access can edit a tag or move an alias (MLflow's UI has a pencil on
it), but only defectops writes signed audit entries.
"""

from __future__ import annotations

from defectops import identity
from defectops.errors import RegistryError

__all__ = ["RegistryError", "audited_champion", "check_decision", "champion_refusal", "canary_refusal",
           "acknowledgement", "evidence_warning", "submitters"]

DECISIONS = ("approve", "rollback")  # the actions that make a version champion


def _done(entries: list[dict], model: str) -> list[dict]:
    return [e for e in entries if e["model"] == model and e.get("phase", "done") == "done"]


def labellers(text: str | None) -> set[str]:
    """The names in a `feedback_labellers` value (comma-separated, as tags and audit entries hold it)."""
    return {identity.normalise(n) for n in (text or "").split(",") if n.strip()}


def submitters(tags: dict, entries: list[dict], model: str, version: str) -> set[str]:
    """The people who may not be this version's second person: its submitter (the registry tag, the signed
    register entry and the account that entry was written from) and whoever labelled the inspector feedback
    it was trained on - approving a model trained on your own answers is checking your own work. Machines
    are excluded: they never decide anyway."""
    names = {identity.normalise(tags.get("submitted_by"))} | labellers(tags.get("feedback_labellers"))
    for e in _done(entries, model):
        if e["action"] == "register" and e["version"] == str(version):
            # The login the run was started from counts too: $DEFECTOPS_USER alone is a free choice.
            names |= {identity.normalise(e["actor"]), identity.normalise(e["details"].get("os_user"))}
            names |= labellers(e["details"].get("feedback_labellers"))  # signed: editing the tag changes nothing
    return {n for n in names if n and not identity.is_service(n)}


def evidence_warning(tags: dict, entries: list[dict], model: str, version: str) -> str | None:
    """Why this version's evidence cannot show the line's recall target (too few defective images), as its
    signed register entry says - deleting the registry tag removes nothing - else as the tag says."""
    for e in _done(entries, model):
        if e["action"] == "register" and e["version"] == str(version) and e["details"].get("evidence_warning"):
            return e["details"]["evidence_warning"]
    return tags.get("evidence_warning") or None


def acknowledgement(warning: str | None, action: str) -> dict:
    """What an approval's audit entry adds about the evidence warning its approver acknowledged (nothing else)."""
    return {"acknowledged_evidence_warning": warning} if warning and action == "approved" else {}


def check_decision(model: str, version: str, status: str | None, submitted: set[str], by: str, reason: str,
                   action: str, warning: str | None = None, acknowledged: bool = False) -> str:
    """The rules every backend enforces before approving or rejecting; returns the normalised decider.

    A version whose evidence cannot show the recall target (`warning`) is approved only when the approver says
    they read that (`acknowledged`): a line run on it is the approver's call, never a default."""
    person = identity.require_person(by, "approval" if action == "approved" else "rejection")
    if not reason or not reason.strip():
        raise RegistryError(f"{'approval' if action == 'approved' else 'rejection'} needs a reason (--reason TEXT); "
                            "it is kept in the quality record")
    if status != "pending":
        raise RegistryError(f"{model} v{version} is '{status}'; only 'pending' versions can be {action}")
    if action == "approved" and person in submitted:
        raise RegistryError(f"four-eyes rule: {person} submitted {model} v{version}, or labelled inspector "
                            "feedback it was trained on, and cannot also approve it; another person must review it")
    if action == "approved" and warning and not acknowledged:
        raise RegistryError(f"{model} v{version}: {warning}. Approving it runs the line on a recall its evidence "
                            "cannot show: acknowledge that (--acknowledge-evidence; on the review page, the box "
                            "above the buttons), or add defective validation images and retrain")
    return person


def approved_by_another(entries: list[dict], model: str, version: str, submitted: set[str],
                        action: str = "approve") -> bool:
    """A confirmed `action` entry for this version by a person who is neither a submitter nor a machine."""
    return any(e["action"] == action and e["version"] == str(version) and not identity.is_service(e["actor"])
               and identity.normalise(e["actor"]) not in submitted for e in _done(entries, model))


def audited_champion(entries: list[dict], model: str) -> str | None:
    """The version the signed log last made champion (an approval or a rollback), whatever the alias says."""
    decisions = [e for e in _done(entries, model) if e["action"] in DECISIONS]
    return decisions[-1]["version"] if decisions else None


def champion_refusal(model: str, version: str, tags: dict, entries: list[dict]) -> str | None:
    """Why this version must not be served as champion, or None when a second person approved it."""
    if tags.get("approval") != "approved":
        return (f"{model} v{version} holds the champion alias but its approval is '{tags.get('approval')}': "
                "the alias was moved outside defectops; not served")
    audited = audited_champion(entries, model)
    if audited != str(version):
        return (f"{model} v{version} holds the champion alias, but the audit log's last approval or rollback "
                f"names {'v' + audited if audited else 'no version'}: the alias was moved outside defectops; "
                "not served")
    if not approved_by_another(entries, model, version, submitters(tags, entries, model, version), "approve"):
        return f"{model} v{version} has no audited approval by a person other than its submitter; not served"
    return None


def canary_refusal(model: str, version: str, tags: dict, entries: list[dict]) -> str | None:
    """Why this challenger must not take canary traffic, or None when a second person cleared it."""
    if tags.get("canary") != "approved":
        return f"{model} v{version} is not cleared for canary traffic"
    if not approved_by_another(entries, model, version, submitters(tags, entries, model, version),
                                "approve_canary"):
        return (f"{model} v{version} is tagged canary=approved, but the audit log holds no canary clearance by a "
                "person other than its submitter; not served")
    return None

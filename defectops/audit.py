"""Tamper-evident audit log of registry actions: append-only JSON lines, hash-chained, signed, anchored.

- Every entry stores the sha256 of the previous one and its own, so editing, deleting or reordering a
  line breaks the chain from that line on.
- Every entry carries an HMAC of its hash under a key from the environment (a secret store in
  production): whoever can write the file but not read the key cannot rewrite the chain, even with
  recomputed hashes.
- The registry keeps the head (`seq:hash` of the newest entry about each model): a truncated tail, an
  emptied or deleted file, or a whole rewrite no longer matches it.
- A decision is written as intent first, then the registry changes, then it is confirmed, so a crash
  in between leaves an intent with no confirmation rather than a registry change with no record.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from defectops.errors import DefectopsError

GENESIS = "0" * 64
KEY_ENV, KEY_FILE_ENV = "DEFECTOPS_AUDIT_KEY", "DEFECTOPS_AUDIT_KEY_FILE"
_lock = threading.Lock()
log = logging.getLogger("defectops.audit")


class AuditError(DefectopsError):
    """The audit log does not verify; the message names the first bad line."""

    exit_code = 5


def audit_path() -> Path:
    return Path(os.environ.get("DEFECTOPS_AUDIT_LOG", "audit/registry_audit.jsonl"))


def _key_file() -> Path:
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "defectops" / "audit.key"


def signing_key(create: bool = False) -> bytes:
    """$DEFECTOPS_AUDIT_KEY, else the key file ($DEFECTOPS_AUDIT_KEY_FILE, or one in the user's config).

    The default file lives outside the project, never beside the log it protects; on a shared
    registry every writer and verifier must get the same key from the secret store instead.
    """
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = _key_file()
    if path.exists():
        return path.read_text().strip().encode()
    if not create:
        raise AuditError(f"no audit signing key: set {KEY_ENV} (from your secret store) or {KEY_FILE_ENV}; "
                         f"{path} does not exist")
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    log.warning("created an audit signing key in %s; on a shared registry set %s from a secret store instead",
                path, KEY_ENV)
    return path.read_text().strip().encode()


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def _last(path: Path) -> tuple[int, str]:
    if not path.exists():
        return 0, GENESIS
    last = None
    with open(path) as fh:
        for line in fh:
            if line.strip():
                last = line
    if last is None:
        return 0, GENESIS
    entry = json.loads(last)
    return int(entry["seq"]), entry["hash"]


def head(entry: dict) -> str:
    """What the registry keeps as the anchor of a model's newest entry."""
    return f"{entry['seq']}:{entry['hash']}"


def append(action: str, actor: str, model: str, version: str, phase: str = "done", **details) -> dict:
    """Record one action; returns the entry as written (fsynced before returning)."""
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = signing_key(create=True)
    with _lock:
        seq, previous = _last(path)
        entry = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 "action": action, "actor": actor, "model": model, "version": str(version), "phase": phase,
                 "details": details, "prev_hash": previous}
        entry["hash"] = _digest(entry)
        entry["mac"] = _mac(key, entry["hash"])
        with open(path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return entry


@contextlib.contextmanager
def recorded(action: str, actor: str, model: str, version: str, anchor: Callable[[dict], None] | None = None,
             **details) -> Iterator[dict]:
    """Intent, then the change (the `with` body), then confirmation ('done') or 'failed' with the error."""
    intent = append(action, actor, model, version, phase="intent", **details)
    if anchor:
        anchor(intent)
    try:
        yield intent
    except BaseException as exc:
        failed = append(action, actor, model, version, phase="failed", intent_seq=intent["seq"],
                        error=f"{type(exc).__name__}: {exc}"[:500])
        if anchor:
            anchor(failed)
        raise
    done = append(action, actor, model, version, phase="done", intent_seq=intent["seq"], **details)
    if anchor:
        anchor(done)


def decisions(entries: list[dict]) -> list[dict]:
    """One row per decision for people to read: an intent and its confirmation (or failure) are one decision,
    shown with the intent's number and reason, the outcome's time and `outcome` done / failed / unconfirmed
    (an intent with nothing after it: the process died mid-change). The log itself keeps every phase."""
    outcomes = {e["details"].get("intent_seq"): e for e in entries if e.get("phase") in ("done", "failed")}
    rows = []
    for e in entries:
        phase = e.get("phase", "done")
        if phase == "intent":
            outcome = outcomes.get(e["seq"])
            rows.append({**e, "time": outcome["time"] if outcome else e["time"],
                         "outcome": outcome["phase"] if outcome else "unconfirmed",
                         "error": outcome["details"].get("error", "") if outcome else ""})
        elif e["details"].get("intent_seq") is None:  # recorded in one step (no intent before it)
            rows.append({**e, "outcome": phase, "error": e["details"].get("error", "")})
    return rows


def read(path: Path | None = None) -> list[dict]:
    path = path or audit_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def verified_entries(path: Path | None = None, anchors: dict[str, str] | None = None) -> list[dict]:
    """The whole chain, checked line by line and against the registry's anchors; AuditError at the first break.

    `anchors` maps a model name to the head the registry holds for it (see `head`).
    """
    path = path or audit_path()
    anchors = {m: a for m, a in (anchors or {}).items() if a}
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        if anchors:
            raise AuditError(f"{path}: the audit log is {'empty' if path.exists() else 'missing'}, but the registry "
                             f"holds decisions for {', '.join(sorted(anchors))}; it was deleted or emptied")
        return []
    key = signing_key()
    previous, entries = GENESIS, []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AuditError(f"{path}:{n}: not a JSON object; the log was edited") from None
        if entry.get("prev_hash") != previous:
            raise AuditError(f"{path}:{n}: prev_hash does not match line {n - 1}; a line was removed, "
                             "inserted or reordered")
        if _digest(entry) != entry.get("hash"):
            raise AuditError(f"{path}:{n}: content does not match its hash; the entry was edited "
                             f"({entry.get('action')} of {entry.get('model')} v{entry.get('version')})")
        if not hmac.compare_digest(str(entry.get("mac", "")), _mac(key, entry["hash"])):
            raise AuditError(f"{path}:{n}: signature does not match; the entry was not written with this "
                             f"deployment's audit key ({KEY_ENV}): the log was rewritten or the key differs")
        previous = entry["hash"]
        entries.append(entry)
    by_seq = {int(e["seq"]): e["hash"] for e in entries}
    for model, anchor in sorted(anchors.items()):
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or int(seq) not in by_seq:
            raise AuditError(f"{path}: the registry's newest entry for {model} is #{seq}, but the log ends at "
                             f"#{entries[-1]['seq']}; its tail was cut off")
        if by_seq[int(seq)] != digest:
            raise AuditError(f"{path}: entry #{seq} is not the one the registry anchored for {model}; "
                             "the log was rewritten")
    return entries


def verify(path: Path | None = None, anchors: dict[str, str] | None = None) -> int:
    """Number of entries in an intact chain; raises AuditError at the first break."""
    return len(verified_entries(path, anchors))

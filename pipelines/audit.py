"""Tamper-evident audit log of registry actions: append-only JSON lines, each hash-chained.

Every entry stores the sha256 of the previous entry, and its own hash over its content, so
editing, deleting or reordering any line breaks the chain from that line on. Quality records
for regulated lines need "who promoted which model, when and why" to be provable.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from defectops.errors import DefectopsError

GENESIS = "0" * 64
_lock = threading.Lock()


class AuditError(DefectopsError):
    """The audit log does not verify; the message names the first bad line."""

    exit_code = 5


def audit_path() -> Path:
    return Path(os.environ.get("DEFECTOPS_AUDIT_LOG", "audit/registry_audit.jsonl"))


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _last_hash(path: Path) -> tuple[int, str]:
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


def append(action: str, actor: str, model: str, version: str, **details) -> dict:
    """Record one action; returns the entry as written."""
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        seq, previous = _last_hash(path)
        entry = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 "action": action, "actor": actor, "model": model, "version": str(version),
                 "details": details, "prev_hash": previous}
        entry["hash"] = _digest(entry)
        with open(path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return entry


def read(path: Path | None = None) -> list[dict]:
    path = path or audit_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def verify(path: Path | None = None) -> int:
    """Check the whole chain; returns the number of entries or raises AuditError at the first break."""
    path = path or audit_path()
    if not path.exists():
        return 0
    previous, count = GENESIS, 0
    for n, line in enumerate(path.read_text().splitlines(), start=1):
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
        previous, count = entry["hash"], count + 1
    return count

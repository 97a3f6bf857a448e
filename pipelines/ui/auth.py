"""Who is acting: local users with salted PBKDF2 password hashes, or a header set by a trusted proxy."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from defectops.errors import DefectopsError

ITERATIONS = 200_000


def _hash(password: str, salt: str, iterations: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations).hex()


def load_users(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get("users", {})
    except json.JSONDecodeError as exc:
        raise DefectopsError(f"{path}: not valid JSON ({exc}); expected "
                             "{'users': {name: {salt, hash, iterations}}}") from None


def add_user(path: Path, name: str, password: str) -> None:
    if not name.strip() or len(password) < 8:
        raise DefectopsError("a user needs a name and a password of at least 8 characters")
    users = load_users(path)
    salt = secrets.token_hex(16)
    users[name] = {"salt": salt, "hash": _hash(password, salt, ITERATIONS), "iterations": ITERATIONS}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"users": users}, indent=2) + "\n")
    Path(path).chmod(0o600)


def check_password(users: dict, name: str, password: str) -> bool:
    user = users.get(name)
    if user is None:
        _hash(password, "00" * 16, ITERATIONS)  # same work either way: no user enumeration by timing
        return False
    return hmac.compare_digest(_hash(password, user["salt"], int(user.get("iterations", ITERATIONS))), user["hash"])

"""Who is acting: local users with salted PBKDF2 password hashes and roles, CLI tokens, and a login rate limit.

Roles, checked here for the page and the CLI alike: an `inspector` answers about parts (the inspection
queue); an `approver` does that and decides about models. Users added before roles existed were all
approvers and stay so.

Names are stored and compared normalised (`defectops.identity`): `QA.Lead` logs in as `qa.lead`, so
four-eyes can never be passed with a case variant of the submitter's name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from defectops import audit, identity
from defectops.errors import DefectopsError

ITERATIONS = 200_000
TOKEN_HOURS = 8
TOKEN_ENV = "DEFECTOPS_TOKEN"
ROLES = ("inspector", "approver")
LEGACY_ROLES = ("approver",)  # a user (or token) recorded before roles existed
MAY = {"label": {"inspector", "approver"}, "decide": {"approver"}}  # action -> roles allowed to take it


def _hash(password: str, salt: str, iterations: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations).hex()


def load_users(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        users = json.loads(path.read_text()).get("users", {})
    except json.JSONDecodeError as exc:
        raise DefectopsError(f"{path}: not valid JSON ({exc}); expected "
                             "{'users': {name: {salt, hash, iterations}}}") from None
    return {identity.normalise(name): record for name, record in users.items()}


def add_user(path: Path, name: str, password: str, roles: tuple[str, ...] = ("approver",)) -> str:
    """Add or reset a user; returns the normalised name they log in and are recorded as."""
    person = identity.normalise(name)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise DefectopsError(f"roles {unknown or '(none)'}: expected one or more of {', '.join(ROLES)}")
    if not person or len(password) < 8:
        raise DefectopsError("a user needs a name and a password of at least 8 characters")
    if identity.is_service(person):
        raise DefectopsError(f"'{person}' is a service identity (an engine or container account), not a person")
    users = load_users(path)
    salt = secrets.token_hex(16)
    users[person] = {"salt": salt, "hash": _hash(password, salt, ITERATIONS), "iterations": ITERATIONS,
                     "roles": sorted(set(roles))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"users": users}, indent=2) + "\n")
    Path(path).chmod(0o600)
    return person


def check_password(users: dict, name: str, password: str) -> bool:
    user = users.get(identity.normalise(name))
    if user is None:
        _hash(password, "00" * 16, ITERATIONS)  # same work either way: no user enumeration by timing
        return False
    return hmac.compare_digest(_hash(password, user["salt"], int(user.get("iterations", ITERATIONS))), user["hash"])


def roles_of(users: dict, name: str) -> tuple[str, ...]:
    """A listed user's roles; someone not listed (named by a trusted proxy) is an approver, as before roles."""
    user = users.get(identity.normalise(name))
    return tuple(user.get("roles") or LEGACY_ROLES) if user else LEGACY_ROLES


def require_role(person: str, roles: tuple[str, ...], action: str) -> None:
    """The one check of who may do what: `label` (answer about a part) or `decide` (approve, reject, roll
    back a model). An inspector's answers train the next model; they never release one."""
    from defectops.errors import RefusedError

    if not MAY[action] & set(roles):
        raise RefusedError(f"{person} is {' and '.join(roles) or 'no role'}; to {action} needs the role "
                           f"{' or '.join(sorted(MAY[action]))} ('defectops ui-add-user {person} --role ...')")


def _serializer():
    from itsdangerous import URLSafeTimedSerializer

    # Signed with the audit key: whoever holds it can rewrite the audit log anyway.
    return URLSafeTimedSerializer(audit.signing_key(create=True), salt="defectops-cli-login")


def token_path() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "defectops" / "token"


def issue_token(person: str, roles: tuple[str, ...] = LEGACY_ROLES) -> str:
    return _serializer().dumps({"user": identity.normalise(person), "roles": list(roles)})


def token_user(token: str) -> str:
    return token_identity(token)[0]


def token_identity(token: str) -> tuple[str, tuple[str, ...]]:
    """The person a CLI token names and their roles; an expired or forged token is an error saying how to get
    a new one."""
    from itsdangerous import BadSignature, SignatureExpired

    try:
        claims = _serializer().loads(token.strip(), max_age=TOKEN_HOURS * 3600)
        return identity.normalise(claims["user"]), tuple(claims.get("roles") or LEGACY_ROLES)
    except SignatureExpired:
        raise DefectopsError(f"your login expired (tokens last {TOKEN_HOURS} h): run 'defectops login'") from None
    except (BadSignature, KeyError, TypeError):
        raise DefectopsError("the login token is not valid here (forged, or signed with another key): "
                             "run 'defectops login'") from None


def save_token(token: str) -> Path:
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return path


def logged_in_user() -> str:
    return logged_in()[0]


def logged_in() -> tuple[str, tuple[str, ...]]:
    """The person the CLI acts as and their roles: $DEFECTOPS_TOKEN, else the token 'defectops login' saved."""
    token = os.environ.get(TOKEN_ENV) or (token_path().read_text() if token_path().exists() else "")
    if not token.strip():
        raise DefectopsError("not logged in: run 'defectops login' (or pass --user to be asked for your password); "
                             "decisions are recorded under an authenticated name, never a typed one")
    return token_identity(token)


class LoginLimiter:
    """At most `attempts` failed logins per client and per account in `window_s`: guessing stays slow."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0):
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque:
        failures = self._failures[key]
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str, name: str) -> int:
        """Seconds until another try is allowed (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self.window_s - (now - f[0]) for f in (self._recent(f"ip:{client}", now),
                                                             self._recent(f"user:{identity.normalise(name)}", now))
                     if len(f) >= self.attempts]
        return int(max(waits)) + 1 if waits else 0

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(f"ip:{client}", now).append(now)
            self._recent(f"user:{identity.normalise(name)}", now).append(now)

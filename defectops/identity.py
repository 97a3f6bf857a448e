"""Who is acting: one normal form for people's names, and the identities that are machines, not people.

Four-eyes compares names, so `Bob`, ` bob ` and `BOB` must be one person. Engines act as accounts
(`root` in a KFP pod, `pipeline` on SageMaker, `service:kfp`): they may submit runs, never decide.
"""

from __future__ import annotations

import getpass
import os
import re

from defectops.errors import RegistryError

SERVICE_PREFIX = "service:"
# Accounts engines and containers run as; a name that is one of these is a machine.
SERVICE_ACCOUNTS = frozenset({"root", "pipeline", "system", "kfp", "sagemaker", "dvc", "airflow", "jenkins",
                              "runner", "nobody", "default-editor", "pipeline-runner"})


class IdentityError(RegistryError):
    """A name is missing, or a machine identity tried to make a human decision."""


def normalise(name: str | None) -> str:
    """Case-folded, trimmed, inner whitespace collapsed: the form names are stored and compared in."""
    return re.sub(r"\s+", " ", (name or "").strip()).casefold()


def is_service(name: str | None) -> bool:
    person = normalise(name)
    return person.startswith(SERVICE_PREFIX) or person in SERVICE_ACCOUNTS or person.startswith("system:")


def service(engine: str) -> str:
    """The identity an engine acts as (recorded beside the human who submitted the run)."""
    return f"{SERVICE_PREFIX}{normalise(engine)}"


def current_user() -> str:
    """The human at this terminal or notebook: $DEFECTOPS_USER, else the login name."""
    return normalise(os.environ.get("DEFECTOPS_USER") or getpass.getuser())


def require_person(name: str | None, action: str) -> str:
    """The normalised name of a human allowed to make `action`; machines and blanks are refused."""
    person = normalise(name)
    if not person:
        raise IdentityError(f"{action} needs an authenticated person ('defectops login', or the review page)")
    if is_service(person):
        raise IdentityError(f"{action} refused: '{person}' is a service identity (an engine or container account); "
                            "only a person can make this decision")
    return person


def same_person(a: str | None, b: str | None) -> bool:
    return bool(normalise(a)) and normalise(a) == normalise(b)

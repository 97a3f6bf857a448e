"""`defectops registry ...`, `defectops audit ...` and `defectops login`: decisions by signed-in people."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from defectops import audit, identity
from defectops.cli_support import BACKEND_OPTION, MODEL_NAME_OPTION, PARAMS_OPTION, console, step_errors
from defectops.errors import RefusedError
from defectops.registries import open_registry_from
from defectops.ui import auth

app = typer.Typer(help="Model registry: list, show, approve, reject, roll back.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident registry audit log.", no_args_is_help=True)


# `registry list`'s columns in the order shown, and which to keep first when the terminal is narrow: what a
# version is and whether it serves never gets cut to one letter and an ellipsis.
LIST_COLUMNS = (
    ("version", 0, lambda v: v.version),
    ("approval", 0, lambda v: v.tags.get("approval", "?")),
    ("aliases", 0, lambda v: ",".join(v.aliases)),
    ("recall", 1, lambda v: _short(v.tags.get("test_recall", ""))),
    ("precision", 2, lambda v: _short(v.tags.get("test_precision", ""))),
    ("threshold", 4, lambda v: _short(v.tags.get("threshold", ""))),
    ("submitted by", 5, lambda v: v.tags.get("submitted_by", "")),
    ("decided by", 3, lambda v: v.tags.get("approved_by", v.tags.get("rejected_by", ""))),
    ("trigger", 6, lambda v: v.tags.get("trigger", "")),
    ("dataset md5", 7, lambda v: v.tags.get("dataset_md5", "")[:12]),
)


def _short(number: str) -> str:
    try:
        return f"{float(number):.4g}"
    except ValueError:
        return number


def versions_table(versions, width: int) -> Table:
    """The columns that fit `width` whole, by priority; the caption names the ones left out."""
    cells = {name: [cell(v) for v in versions] for name, _, cell in LIST_COLUMNS}
    need = {name: max([len(name), *map(len, cells[name])]) + 3 for name in cells}  # padding and a border
    kept, used = set(), 1
    for name, _, _ in sorted(LIST_COLUMNS, key=lambda column: column[1]):
        if used + need[name] <= width or not kept:
            kept.add(name)
            used += need[name]
    shown = [name for name, _, _ in LIST_COLUMNS if name in kept]
    left_out = [name for name, _, _ in LIST_COLUMNS if name not in kept]
    table = Table(*shown, caption=f"not shown at this width: {', '.join(left_out)} (--json has all)"
                  if left_out else None)
    for column in table.columns:
        column.no_wrap = True
    for row in range(len(versions)):
        table.add_row(*(cells[name][row] for name in shown))
    return table


@app.command("list")
def registry_list(model_name: str = MODEL_NAME_OPTION,
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                  backend: str = BACKEND_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Every version with its approval state, aliases and headline metrics."""
    with step_errors("registry list"):
        versions = open_registry_from(params, model_name, backend).versions()
    if as_json:
        typer.echo(json.dumps([{"version": v.version, "aliases": v.aliases, "tags": v.tags} for v in versions],
                              indent=2))
        return

    console.print(versions_table(versions, console.width))


@app.command("show")
def registry_show(version: str = typer.Argument(..., help="Version number."),
                  model_name: str = MODEL_NAME_OPTION, backend: str = BACKEND_OPTION,
                  params: Path = PARAMS_OPTION) -> None:
    """All tags of one version (evidence, lineage, decision) as JSON."""
    with step_errors("registry show"):
        v = open_registry_from(params, model_name, backend).get(version)
    typer.echo(json.dumps({"name": v.name, "version": v.version, "aliases": v.aliases, "run_id": v.run_id,
                           "source": v.source, "tags": dict(sorted(v.tags.items()))}, indent=2))


REASON_OPTION = typer.Option(..., "--reason", help="Why; kept on the version and in the audit log.")
USERS_OPTION = typer.Option(Path("ui_users.json"), "--users", help="Users file (see 'defectops ui-add-user').")
USER_OPTION = typer.Option(None, "--user", help="Sign in as this user for this one command (password asked) "
                                               "instead of the 'defectops login' token.")
PASSWORD_STDIN_OPTION = typer.Option(False, "--password-stdin", help="Read the password from stdin (scripts).")
ACKNOWLEDGE_OPTION = typer.Option(
    False, "--acknowledge-evidence",
    help="Approve although the version's evidence cannot show the recall target (too few defective validation "
         "images; `registry show` and the review page say so); recorded in the audit log.")


def _read_password(password_stdin: bool) -> str:
    import sys

    return sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)


def _signed_in(user: str | None, users: Path, password_stdin: bool) -> tuple[str, tuple[str, ...]]:
    """An authenticated user (password now, or a login token), never a typed name, and their roles."""

    if user is None:
        return auth.logged_in()
    known = auth.load_users(users)
    if not auth.check_password(known, user, _read_password(password_stdin)):
        raise RefusedError(f"unknown user or wrong password for '{user}' (users file {users})")

    return identity.normalise(user), auth.roles_of(known, user)


def _acting_user(user: str | None, users: Path, password_stdin: bool) -> str:
    """Who decides about a model: signed in, and an approver (an inspector's role ends at labelling)."""
    person, roles = _signed_in(user, users, password_stdin)
    auth.require_role(person, roles, "decide")
    return person


def login_command(user: str = typer.Argument(..., help="Your name in the users file."), users: Path = USERS_OPTION,
                  password_stdin: bool = PASSWORD_STDIN_OPTION) -> None:
    """Sign in for registry decisions on this machine; the token lasts 8 hours ($DEFECTOPS_TOKEN works too)."""
    with step_errors("login"):
        person, roles = _signed_in(user, users, password_stdin)
        path = auth.save_token(auth.issue_token(person, roles))
    console.print(f"signed in as {person} (token in {path}, valid {auth.TOKEN_HOURS} h)")


def _decide(action: str, version: str, reason: str, model_name: str, backend: str | None, params: Path,
            user: str | None, users: Path, password_stdin: bool, acknowledge: bool = False) -> None:
    """approve / reject / canary through one path, whichever registry holds the model."""
    with step_errors(f"registry {action}"):
        by = _acting_user(user, users, password_stdin)
        info = open_registry_from(params, model_name, backend).decide(action, version, by, reason, acknowledge)
    state = "cleared for canary traffic" if action == "approve_canary" else info.tags["approval"]
    console.print(f"{model_name} v{info.version}: {state} by {by}; aliases: {info.aliases}")


@app.command("approve")
def registry_approve(
    version: str = typer.Argument(..., help="Pending version to promote to champion."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    backend: str = BACKEND_OPTION,
    params: Path = PARAMS_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
    acknowledge_evidence: bool = ACKNOWLEDGE_OPTION,
) -> None:
    """Approve a pending version as the signed-in user: it becomes the champion (never the submitter's own run)."""
    _decide("approve", version, reason, model_name, backend, params, user, users, password_stdin,
            acknowledge_evidence)


@app.command("reject")
def registry_reject(
    version: str = typer.Argument(..., help="Pending version to reject."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    backend: str = BACKEND_OPTION,
    params: Path = PARAMS_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
) -> None:
    """Reject a pending version as the signed-in user; it can never become champion."""
    _decide("reject", version, reason, model_name, backend, params, user, users, password_stdin)


@app.command("canary")
def registry_canary(
    version: str = typer.Argument(..., help="The pending challenger to clear for canary traffic."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    params: Path = PARAMS_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
    acknowledge_evidence: bool = ACKNOWLEDGE_OPTION,
) -> None:
    """Clear the challenger for a share of live traffic (serve.canary_share); four-eyes applies."""
    _decide("approve_canary", version, reason, model_name, None, params, user, users, password_stdin,
            acknowledge_evidence)


@app.command("rollback")
def registry_rollback(reason: str = REASON_OPTION, model_name: str = MODEL_NAME_OPTION, user: str = USER_OPTION,
                      users: Path = USERS_OPTION, password_stdin: bool = PASSWORD_STDIN_OPTION,
                      backend: str = BACKEND_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Make the previous champion the champion again, in one step, as the signed-in user."""
    with step_errors("registry rollback"):
        by = _acting_user(user, users, password_stdin)
        info = open_registry_from(params, model_name, backend).rollback(by, reason)
    console.print(f"[green]{model_name} v{info.version} is champion again (rolled back by {by})[/]")


@audit_app.command("verify")
def audit_verify(path: Path = typer.Option(None, help="Audit log (default: $DEFECTOPS_AUDIT_LOG or "
                                                      "audit/registry_audit.jsonl)."),
                 model_name: list[str] = typer.Option(["defectops-detector"], "--model-name",
                                                      help="Registered models whose anchors the log must match "
                                                           "(repeatable)."),
                 backend: str = BACKEND_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Check the log's hash chain and signatures, and its head against the registry; exit 5 at the first break."""
    with step_errors("audit verify"):
        anchors = {}
        for name in model_name:
            anchors.update(open_registry_from(params, name, backend).audit_anchors())
        count = audit.verify(path, anchors)
    console.print(f"[green]audit log intact: {count} entries, signed, and matching the registry's anchors[/]")


@audit_app.command("show")
def audit_show(path: Path = typer.Option(None, help="Audit log to print.")) -> None:
    """Print the registry audit log as a table."""
    table = Table("#", "time", "action", "phase", "actor", "model", "version", "details")
    for e in audit.read(path):
        table.add_row(str(e["seq"]), e["time"], e["action"], e.get("phase", "done"), e["actor"], e["model"],
                      e["version"], json.dumps(e["details"]))
    console.print(table)

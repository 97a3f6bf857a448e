"""`defectops ui` and `defectops ui-add-user`: the approvers' review page and its users."""

from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import BACKEND_OPTION, MODEL_NAME_OPTION, PARAMS_OPTION, console, step_errors
from defectops.config import load_step_config
from defectops.errors import DefectopsError
from defectops.feedback.config import FeedbackConfig
from defectops.registries import open_registry_from
from defectops.ui import auth


def ui_command(
    host: str = typer.Option("127.0.0.1", help="Bind address; loopback unless behind a proxy."),
    port: int = typer.Option(8100),
    users: Path = typer.Option(Path("ui_users.json"), help="Local users file (see 'defectops ui-add-user')."),
    trusted_header: str = typer.Option(None, help="Take the approver's name from this header, set by a trusted "
                                                  "authenticating proxy, instead of the login page. The proxy "
                                                  "must send $DEFECTOPS_PROXY_SECRET in "
                                                  "X-Defectops-Proxy-Secret."),
    model_name: str = MODEL_NAME_OPTION,
    backend: str = BACKEND_OPTION,
    params: Path = PARAMS_OPTION,
    reports_root: Path = typer.Option(Path("monitoring"), help="Drift reports are served only from inside this "
                                                               "folder ('defectops monitor --out')."),
    records: str = typer.Option("monitoring/decisions.db", help="The endpoint's decision store (serve.records_url): "
                                                               "what each version does on the line."),
) -> None:
    """The review site: approvers' pending versions, evidence side by side, approve / reject / rollback; and the
    inspectors' queue of uncertain parts (/inspect)."""
    import os

    import uvicorn

    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.ui.app import create_app

    store = open_registry_from(params, model_name, backend)
    with step_errors("ui"):
        serve = load_step_config(ServeConfig, "serve", params)
        feedback = load_step_config(FeedbackConfig, "feedback", params)
        try:
            site = create_app(model_name, users, trusted_header, store, os.environ.get("DEFECTOPS_PROXY_SECRET"),
                              local=host in ("127.0.0.1", "localhost", "::1"), reports_root=reports_root,
                              records=records, feedback=feedback, archive_root=serve.archive_root,
                              deploy_root=serve.deploy_root)
        except ValueError as exc:
            raise DefectopsError(str(exc)) from None
    uvicorn.run(site, host=host, port=port, log_level="warning")


def ui_add_user(
    name: str = typer.Argument(..., help="Login name; it is recorded as the approver."),
    users: Path = typer.Option(Path("ui_users.json"), help="Users file to add to (created 0600)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    role: list[str] = typer.Option(["approver"], "--role", help="inspector (answers the inspection queue) and/or "
                                                                "approver (that, and decides about models)."),
) -> None:
    """Add or reset a local review-page user (salted PBKDF2 hash; the password is never stored)."""
    import sys

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    with step_errors("ui-add-user"):
        person = auth.add_user(users, name, password, tuple(role))
    console.print(f"user {person} ({', '.join(sorted(set(role)))}) saved in {users}")

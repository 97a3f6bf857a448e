"""`defectops`: one command per pipeline step, plus the registry, the engines and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from defectops.cli_support import PARAMS_OPTION, console, step_errors
from defectops.components.augment import cli as augment_cli
from defectops.components.deploy import cli as deploy_cli
from defectops.components.evaluate import cli as evaluate_cli
from defectops.components.ingest import cli as ingest_cli
from defectops.components.monitor import cli as monitor_cli
from defectops.components.register import cli as register_cli
from defectops.components.train import cli as train_cli
from defectops.components.tune import cli as tune_cli
from defectops.components.validate import cli as validate_cli
from defectops.records import cli as records_cli

app = typer.Typer(help="defectops: visual defect detection from dataset to monitored endpoint.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
app.command("ingest")(ingest_cli.command)
app.command("validate")(validate_cli.command)
app.command("augment")(augment_cli.command)
app.command("train")(train_cli.command)
app.command("tune")(tune_cli.command)
app.command("evaluate")(evaluate_cli.command)
app.command("register")(register_cli.command)
app.command("deploy")(deploy_cli.command)
app.command("serve")(deploy_cli.serve)
app.command("monitor")(monitor_cli.command)

registry_app = typer.Typer(help="Model registry: list, show, approve, reject, roll back.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
audit_app = typer.Typer(help="The tamper-evident registry audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
sagemaker_app = typer.Typer(help="SageMaker: deploy approved model packages.", no_args_is_help=True)
app.add_typer(sagemaker_app, name="sagemaker")
pipeline_app = typer.Typer(help="Render or run the training DAG on an engine.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
data_app = typer.Typer(help="Datasets: import your own images; list DVC-tracked dataset versions.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
MODEL_NAME_OPTION = typer.Option("defectops-detector", "--model-name", help="Registered model name.")

data_app.command("import")(ingest_cli.import_command)
app.add_typer(records_cli.app, name="records")


@data_app.command("versions")
def data_versions_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                          model_name: str = MODEL_NAME_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Dataset versions (from the commits of dvc.lock), their md5s, and the models trained on each."""
    from defectops import data_versions as dv
    from defectops.config import load_step_config

    with step_errors("data versions"):
        settings = load_step_config(dv.DataSettings, "data", params)
        versions = dv.list_versions(Path("."), settings, dv.registered_models_by_dataset(model_name))
    if as_json:
        typer.echo(dv.as_json(versions))
        return
    table = Table()
    table.add_column("version", no_wrap=True, min_width=10)
    for column in ("date", "raw md5", "files", "validated md5", "remote"):
        table.add_column(column, no_wrap=True)
    table.add_column("models")
    for v in versions:
        raw, clean = v.datasets.get("data/raw", {}), v.datasets.get("data/validated", {})
        remote = clean.get("in_remote", raw.get("in_remote"))
        table.add_row(v.rev, v.date[:10], (raw.get("md5") or "")[:8], str(raw.get("files") or ""),
                      (clean.get("md5") or "")[:8], {True: "yes", False: "no", None: "?"}[remote],
                      ", ".join(v.models))
    console.print(table)


@data_app.command("profile")
def data_profile_command(
    dataset: Path = typer.Argument(Path("data/raw"), help="Canonical dataset (data/raw, data/validated, an import)."),
    imgsz: int = typer.Option(None, help="Training image size to judge defect sizes at (default: train.imgsz)."),
    png: Path = typer.Option(None, help="Where the figure goes (default: DATASET/profile.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Images per split/class/group, image and defect sizes (also at the training size), near-duplicate groups."""
    from defectops import dataset_profile
    from defectops.components.train.step import TrainConfig, resolve_size
    from defectops.config import load_step_config

    with step_errors("data profile"):
        choice = resolve_size(load_step_config(TrainConfig, "train", params), Path(dataset))
        report = dataset_profile.profile(dataset, imgsz or choice["imgsz"], png or Path(dataset) / "profile.png")
        report["training_size"] = choice
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for item in dataset_profile.render(report):
        console.print(item)


@data_app.command("checkout")
def data_checkout_command(rev: str = typer.Argument(..., help="A commit from 'defectops data versions'."),
                          params: Path = PARAMS_OPTION) -> None:
    """Put that version's dvc.lock, params.yaml and data in the workspace; 'dvc repro' then reproduces it."""
    from defectops import data_versions as dv
    from defectops.config import load_step_config

    with step_errors("data checkout"):
        outs = dv.checkout(Path("."), rev, load_step_config(dv.DataSettings, "data", params))
    for path, info in outs.items():
        console.print(f"{path}: {info['md5']} ({info['files']} files)")
    console.print(f"dvc.lock and params.yaml are now those of {rev}; 'git checkout HEAD -- dvc.lock params.yaml' "
                  "and 'dvc checkout' go back")


@data_app.command("push")
def data_push_command(params: Path = PARAMS_OPTION) -> None:
    """Send the tracked dataset versions to the DVC remote (data.remote_url)."""
    from defectops import data_versions as dv
    from defectops.config import load_step_config

    with step_errors("data push"):
        console.print(dv.push(Path("."), load_step_config(dv.DataSettings, "data", params)))



def _version_row(v) -> list[str]:
    t = v.tags
    return [v.version, t.get("approval", "?"), ",".join(v.aliases), t.get("test_recall", ""),
            t.get("test_precision", ""), t.get("threshold", ""), t.get("submitted_by", ""),
            t.get("approved_by", t.get("rejected_by", "")), t.get("trigger", ""), t.get("dataset_md5", "")[:12]]


@registry_app.command("list")
def registry_list(model_name: str = MODEL_NAME_OPTION,
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every version with its approval state, aliases and headline metrics."""
    from defectops import registry

    if as_json:
        typer.echo(json.dumps([{"version": v.version, "aliases": v.aliases, "tags": v.tags}
                               for v in registry.list_versions(model_name)], indent=2))
        return

    table = Table("version", "approval", "aliases", "recall", "precision", "threshold", "submitted by",
                  "decided by", "trigger", "dataset md5")
    for v in registry.list_versions(model_name):
        table.add_row(*_version_row(v))
    console.print(table)


@registry_app.command("show")
def registry_show(version: str = typer.Argument(..., help="Version number."),
                  model_name: str = MODEL_NAME_OPTION) -> None:
    """All tags of one version (evidence, lineage, decision) as JSON."""
    from defectops import registry

    with step_errors("registry show"):
        v = registry.get_version(model_name, version)
    typer.echo(json.dumps({"name": v.name, "version": v.version, "aliases": v.aliases, "run_id": v.run_id,
                           "source": v.source, "tags": dict(sorted(v.tags.items()))}, indent=2))


BACKEND_OPTION = typer.Option("mlflow", "--backend",
                              help="mlflow (local registry) or sagemaker (model package group = --model-name).")
REASON_OPTION = typer.Option(..., "--reason", help="Why; kept on the version and in the audit log.")
USERS_OPTION = typer.Option(Path("ui_users.json"), "--users", help="Users file (see 'defectops ui-add-user').")
USER_OPTION = typer.Option(None, "--user", help="Sign in as this user for this one command (password asked) "
                                               "instead of the 'defectops login' token.")
PASSWORD_STDIN_OPTION = typer.Option(False, "--password-stdin", help="Read the password from stdin (scripts).")


def _read_password(password_stdin: bool) -> str:
    import sys

    return sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)


def _acting_user(user: str | None, users: Path, password_stdin: bool) -> str:
    """Who decides: an authenticated user (password now, or a login token), never a typed name."""
    from defectops.errors import RefusedError
    from defectops.ui import auth

    if user is None:
        return auth.logged_in_user()
    if not auth.check_password(auth.load_users(users), user, _read_password(password_stdin)):
        raise RefusedError(f"unknown user or wrong password for '{user}' (users file {users})")
    from defectops import identity

    return identity.normalise(user)


@app.command("login")
def login_command(user: str = typer.Argument(..., help="Your name in the users file."), users: Path = USERS_OPTION,
                  password_stdin: bool = PASSWORD_STDIN_OPTION) -> None:
    """Sign in for registry decisions on this machine; the token lasts 8 hours ($DEFECTOPS_TOKEN works too)."""
    from defectops.ui import auth

    with step_errors("login"):
        person = _acting_user(user, users, password_stdin)
        path = auth.save_token(auth.issue_token(person))
    console.print(f"signed in as {person} (token in {path}, valid {auth.TOKEN_HOURS} h)")


def _decide(action: str, version: str, reason: str, model_name: str, backend: str, user: str | None, users: Path,
            password_stdin: bool) -> None:
    """approve / reject / canary through one path, whichever registry holds the model."""
    from defectops import registry

    with step_errors(f"registry {action}"):
        by = _acting_user(user, users, password_stdin)
        if backend == "sagemaker":
            if action == "approve_canary":
                raise registry.RegistryError("canary clearance is an MLflow-registry action; on SageMaker use "
                                             "the endpoint's production variants")
            from defectops.sagemaker_registry import SageMakerRegistry

            package = getattr(SageMakerRegistry(model_name), action)(version, by, reason)
            console.print(f"{package['arn']}: {package['approval']} by {by}")
            return
        info = getattr(registry, action)(model_name, version, by, reason)
    state = "cleared for canary traffic" if action == "approve_canary" else info.tags["approval"]
    console.print(f"{model_name} v{info.version}: {state} by {by}; aliases: {info.aliases}")


@registry_app.command("approve")
def registry_approve(
    version: str = typer.Argument(..., help="Pending version to promote to champion."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    backend: str = BACKEND_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
) -> None:
    """Approve a pending version as the signed-in user: it becomes the champion (never the submitter's own run)."""
    _decide("approve", version, reason, model_name, backend, user, users, password_stdin)


@registry_app.command("reject")
def registry_reject(
    version: str = typer.Argument(..., help="Pending version to reject."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    backend: str = BACKEND_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
) -> None:
    """Reject a pending version as the signed-in user; it can never become champion."""
    _decide("reject", version, reason, model_name, backend, user, users, password_stdin)


@registry_app.command("canary")
def registry_canary(
    version: str = typer.Argument(..., help="The pending challenger to clear for canary traffic."),
    reason: str = REASON_OPTION,
    model_name: str = MODEL_NAME_OPTION,
    user: str = USER_OPTION,
    users: Path = USERS_OPTION,
    password_stdin: bool = PASSWORD_STDIN_OPTION,
) -> None:
    """Clear the challenger for a share of live traffic (serve.canary_share); four-eyes applies."""
    _decide("approve_canary", version, reason, model_name, "mlflow", user, users, password_stdin)


@registry_app.command("rollback")
def registry_rollback(reason: str = REASON_OPTION, model_name: str = MODEL_NAME_OPTION, user: str = USER_OPTION,
                      users: Path = USERS_OPTION, password_stdin: bool = PASSWORD_STDIN_OPTION) -> None:
    """Make the previous champion the champion again, in one step, as the signed-in user."""
    from defectops import registry

    with step_errors("registry rollback"):
        by = _acting_user(user, users, password_stdin)
        info = registry.rollback(model_name, by, reason)
    console.print(f"[green]{model_name} v{info.version} is champion again (rolled back by {by})[/]")


@audit_app.command("verify")
def audit_verify(path: Path = typer.Option(None, help="Audit log (default: $DEFECTOPS_AUDIT_LOG or "
                                                      "audit/registry_audit.jsonl)."),
                 model_name: list[str] = typer.Option(["defectops-detector"], "--model-name",
                                                      help="Registered models whose anchors the log must match "
                                                           "(repeatable)."),
                 backend: str = BACKEND_OPTION) -> None:
    """Check the log's hash chain and signatures, and its head against the registry; exit 5 at the first break."""
    from defectops import audit, registry

    with step_errors("audit verify"):
        anchors = {}
        for name in model_name:
            if backend == "sagemaker":
                from defectops.sagemaker_registry import SageMakerRegistry

                anchors.update(SageMakerRegistry(name).audit_anchors())
            else:
                anchors.update(registry.audit_anchors(name))
        count = audit.verify(path, anchors)
    console.print(f"[green]audit log intact: {count} entries, signed, and matching the registry's anchors[/]")


@audit_app.command("show")
def audit_show(path: Path = typer.Option(None, help="Audit log to print.")) -> None:
    """Print the registry audit log as a table."""
    from defectops import audit

    table = Table("#", "time", "action", "actor", "model", "version", "details")
    for e in audit.read(path):
        table.add_row(str(e["seq"]), e["time"], e["action"], e["actor"], e["model"], e["version"],
                      json.dumps(e["details"]))
    console.print(table)


@sagemaker_app.command("deploy-endpoint")
def sagemaker_deploy_endpoint(
    model_package_arn: str = typer.Option(..., help="ARN of an Approved model package."),
    endpoint: str = typer.Option(..., help="Endpoint name; created, or updated in place if it exists."),
    role_arn: str = typer.Option(..., help="SageMaker execution role for the model."),
    instance_type: str = typer.Option("ml.c5.xlarge"),
    instance_count: int = typer.Option(1, min=1),
) -> None:
    """Deploy an approved SageMaker model package to a real-time endpoint."""
    import boto3

    from defectops.components.deploy.sagemaker_endpoint import deploy_model_package

    with step_errors("sagemaker deploy-endpoint"):
        result = deploy_model_package(boto3.client("sagemaker"), endpoint, model_package_arn, role_arn,
                                      instance_type, instance_count)
    typer.echo(json.dumps(result, indent=2))


ENGINES = ("dvc", "kfp", "sagemaker")


@pipeline_app.command("compile")
def pipeline_compile(
    engine: str = typer.Option("dvc", help=f"Engine to render for: {', '.join(ENGINES)}."),
    out: Path = typer.Option(None, help="Where the rendered pipeline is written (default: dvc.yaml, pipelines/"
                                        "compiled/kfp_pipeline.yaml, pipelines/compiled/sagemaker_pipeline.json)."),
    params: Path = PARAMS_OPTION,
    image: str = typer.Option(None, help="Container image for kfp/sagemaker steps (default: the engine's)."),
    flavour: str = typer.Option("cluster", help="kfp only: 'cluster' (container components) or 'local' "
                                                "(lightweight components for kfp.local)."),
) -> None:
    """Render the declared DAG for an engine (offline: no cluster or cloud account needed)."""
    from defectops.engines import compile_for

    if engine not in ENGINES:
        console.print(f"[red]engine '{engine}' is not one of: {', '.join(ENGINES)}[/]")
        raise typer.Exit(2)
    with step_errors("pipeline compile"):
        console.print(f"wrote {compile_for(engine, out, params, image=image, flavour=flavour)}")


@pipeline_app.command("stage")
def pipeline_stage(
    name: str = typer.Argument(..., help="DAG stage to run."),
    path: list[str] = typer.Option([], "--path", help="DECLARED=ACTUAL: run with ACTUAL where the DAG says DECLARED "
                                                      "(repeatable)."),
    params: Path = typer.Option(None, help="Settings file."),
    params_text: str = typer.Option(None, help="Settings as YAML text (how KFP passes its pipeline parameter)."),
    overrides_json: str = typer.Option(None, help="Tuned settings for a tunable stage, as a JSON object."),
    emit: list[str] = typer.Option([], "--emit", help="NAME=FILE: write an emitted value (e.g. gate_passed) to FILE "
                                                      "(repeatable)."),
) -> None:
    """Run one DAG stage at engine-chosen paths: the entry point of every container step."""
    from defectops.engines.stage import StageError, parse_path_mappings, run_stage, run_stage_text

    with step_errors(f"pipeline stage {name}"):
        if (params is None) == (params_text is None):
            raise StageError("give exactly one of --params FILE or --params-text YAML")
        try:
            overrides = json.loads(overrides_json) if overrides_json else None
        except json.JSONDecodeError as exc:
            raise StageError(f"--overrides-json is not JSON: {exc}") from None
        targets = {}
        for item in emit:
            key, sep, file = item.partition("=")
            if not sep:
                raise StageError(f"--emit '{item}': expected NAME=FILE")
            targets[key] = Path(file)
        mappings = parse_path_mappings(path)
        values = (run_stage(name, params, mappings, overrides) if params is not None
                  else run_stage_text(name, params_text, mappings, overrides))
        for key, file in targets.items():
            if key not in values:
                raise StageError(f"stage '{name}' emits {sorted(values)}; not '{key}'")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values[key]))


@pipeline_app.command("sagemaker-training")
def pipeline_sagemaker_training(
    action: str = typer.Argument("train", help="SageMaker starts training images with 'train'."),
) -> None:
    """Entry of the training image on SageMaker (final training or one tuning trial)."""
    from defectops.engines.stage import main_env_root, sagemaker_training

    if action != "train":
        console.print(f"[red]unknown action '{action}'; SageMaker training images are started with 'train'[/]")
        raise typer.Exit(2)
    with step_errors("sagemaker-training"):
        sagemaker_training(main_env_root())


@pipeline_app.command("run")
def pipeline_run(
    engine: str = typer.Option("local", help="local (dvc repro here), kfp (kfp.host, else kfp.local here) or "
                                             "sagemaker (upload settings, upsert, start)."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage even if nothing changed (retraining)."),
    trigger: str = typer.Option("manual", help="Why this run happens: manual, schedule or drift; tagged on the "
                                              "registered version."),
    trigger_ref: str = typer.Option("", help="Where the trigger came from (e.g. the drift verdict file)."),
    overrides_json: str = typer.Option("", help="Settings for this run only, as JSON sections "
                                                "(e.g. '{\"train\": {\"epochs\": 5}}'); remote engines only: a local "
                                                "run writes what it ran into params.yaml."),
) -> None:
    """Run the training DAG on an engine (through `defectops.submit`) and print what happened."""
    from defectops.submission import submit

    with step_errors(f"pipeline run --engine {engine}"):
        overrides = _json_mapping(overrides_json, "--overrides-json") if overrides_json else None
        submission = submit(engine, params=overrides, trigger=trigger, trigger_ref=trigger_ref, force=force,
                            echo=print)
    stages = submission.details.get("stages")
    if stages:
        table = Table("stage", "status", "wall time (s)")
        for run in stages:
            table.add_row(run["name"], run["status"], f"{run['seconds']:.1f}")
        console.print(table)
    typer.echo(json.dumps(submission.summary(), indent=2))


def _json_mapping(text: str, option: str) -> dict:
    from defectops.errors import DefectopsError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefectopsError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DefectopsError(f"{option}: expected a JSON object of params sections, got {type(value).__name__}")
    return value


@app.command("ui")
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
    reports_root: Path = typer.Option(Path("monitoring"), help="Drift reports are served only from inside this "
                                                               "folder ('defectops monitor --out')."),
    records: str = typer.Option("monitoring/decisions.db", help="The endpoint's decision store (serve.records_url): "
                                                               "what each version does on the line."),
) -> None:
    """The approver's review page: pending versions, evidence side by side, approve / reject / rollback."""
    import os

    import uvicorn

    from defectops.errors import DefectopsError
    from defectops.ui.app import create_app
    from defectops.ui.backends import MlflowBackend, SageMakerBackend

    store = SageMakerBackend(model_name) if backend == "sagemaker" else MlflowBackend(model_name)
    with step_errors("ui"):
        try:
            site = create_app(model_name, users, trusted_header, store, os.environ.get("DEFECTOPS_PROXY_SECRET"),
                              local=host in ("127.0.0.1", "localhost", "::1"), reports_root=reports_root,
                              records=records)
        except ValueError as exc:
            raise DefectopsError(str(exc)) from None
    uvicorn.run(site, host=host, port=port, log_level="warning")


@app.command("ui-add-user")
def ui_add_user(
    name: str = typer.Argument(..., help="Login name; it is recorded as the approver."),
    users: Path = typer.Option(Path("ui_users.json"), help="Users file to add to (created 0600)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Add or reset a local review-page user (salted PBKDF2 hash; the password is never stored)."""
    import sys

    from defectops.ui import auth

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    with step_errors("ui-add-user"):
        person = auth.add_user(users, name, password)
    console.print(f"user {person} saved in {users}")


@app.command("demo")
def demo_command(
    approver: str = typer.Option("qa.lead", help="Name of the person standing in as approver."),
) -> None:
    """The main job on params.yaml: train -> pending -> approve -> deploy -> serve -> drift."""
    from defectops.demo import run_demo

    with step_errors("demo"):
        run_demo(approver)


if __name__ == "__main__":
    app()

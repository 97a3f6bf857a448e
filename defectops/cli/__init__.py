"""`defectops`: one command per pipeline step, plus the registry, the engines and the demo.

Each group of commands has its module here (data, registry, pipeline, review); this one puts them
together. Steps' own commands live beside each step (`components/<step>/cli.py`).
"""

from __future__ import annotations

import typer

from defectops.cli import data, pipeline, registry, review
from defectops.cli_support import step_errors
from defectops.components.augment import cli as augment_cli
from defectops.components.deploy import cli as deploy_cli
from defectops.components.evaluate import cli as evaluate_cli
from defectops.components.ingest import cli as ingest_cli
from defectops.components.monitor import cli as monitor_cli
from defectops.components.register import cli as register_cli
from defectops.components.train import cli as train_cli
from defectops.components.tune import cli as tune_cli
from defectops.components.validate import cli as validate_cli
from defectops.feedback import cli as feedback_cli
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
app.add_typer(registry.app, name="registry")
app.add_typer(registry.audit_app, name="audit")
app.command("login")(registry.login_command)
app.add_typer(pipeline.sagemaker_app, name="sagemaker")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(data.app, name="data")
app.add_typer(records_cli.app, name="records")
app.add_typer(feedback_cli.app, name="feedback")
app.command("ui")(review.ui_command)
app.command("ui-add-user")(review.ui_add_user)


@app.command("demo")
def demo_command(
    approver: str = typer.Option("qa.lead", help="Name of the person standing in as approver."),
) -> None:
    """The main job on params.yaml: train -> pending -> approve -> deploy -> serve -> drift."""
    from defectops.demo import run_demo

    with step_errors("demo"):
        run_demo(approver)

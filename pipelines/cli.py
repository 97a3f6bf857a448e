"""`defectops`: one command per pipeline step, plus the registry, the engines and the demo."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from defectops.cli_support import console, step_errors
from defectops.components.augment import cli as augment_cli
from defectops.components.deploy import cli as deploy_cli
from defectops.components.evaluate import cli as evaluate_cli
from defectops.components.ingest import cli as ingest_cli
from defectops.components.monitor import cli as monitor_cli
from defectops.components.register import cli as register_cli
from defectops.components.train import cli as train_cli
from defectops.components.validate import cli as validate_cli

app = typer.Typer(help="defectops: visual defect detection from dataset to monitored endpoint.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
app.command("ingest")(ingest_cli.command)
app.command("validate")(validate_cli.command)
app.command("augment")(augment_cli.command)
app.command("train")(train_cli.command)
app.command("evaluate")(evaluate_cli.command)
app.command("register")(register_cli.command)
app.command("deploy")(deploy_cli.command)
app.command("serve")(deploy_cli.serve)
app.command("monitor")(monitor_cli.command)

registry_app = typer.Typer(help="Model registry: list versions, approve a pending one.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
pipeline_app = typer.Typer(help="Render or run the training DAG on an engine.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")

MODEL_NAME_OPTION = typer.Option("defectops-detector", "--model-name", help="Registered model name.")


@registry_app.command("list")
def registry_list(model_name: str = MODEL_NAME_OPTION) -> None:
    """Every version with its approval state, aliases and headline metrics."""
    from defectops import registry

    table = Table("version", "approval", "aliases", "recall", "precision", "threshold", "submitted by",
                  "approved by", "dataset md5")
    for v in registry.list_versions(model_name):
        t = v.tags
        table.add_row(v.version, t.get("approval", "?"), ",".join(v.aliases), t.get("test_recall", ""),
                      t.get("test_precision", ""), t.get("threshold", ""), t.get("submitted_by", ""),
                      t.get("approved_by", ""), t.get("dataset_md5", "")[:12])
    console.print(table)


@registry_app.command("approve")
def registry_approve(
    version: str = typer.Argument(..., help="Version number to promote to champion."),
    by: str = typer.Option(..., "--by", help="Name of the approving person (must differ from the submitter)."),
    reason: str = typer.Option("", "--reason", help="Why it is approved; kept on the version."),
    model_name: str = MODEL_NAME_OPTION,
) -> None:
    """A human approves a pending version: it becomes the champion the endpoint serves."""
    from defectops import registry

    with step_errors("registry approve"):
        info = registry.approve(model_name, version, by, reason)
    console.print(f"[green]{model_name} v{info.version} approved by {by}; aliases: {', '.join(info.aliases)}[/]")


@pipeline_app.command("compile")
def pipeline_compile(
    engine: str = typer.Option("dvc", help="Engine to render for (dvc)."),
    out: Path = typer.Option(Path("dvc.yaml"), help="Where the rendered pipeline is written."),
) -> None:
    """Render the declared DAG for an engine."""
    if engine != "dvc":
        console.print(f"[red]engine '{engine}' is not available yet; choose: dvc[/]")
        raise typer.Exit(2)
    from defectops.engines.dvc import write_dvc_yaml

    console.print(f"wrote {write_dvc_yaml(out)}")


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

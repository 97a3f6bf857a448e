"""`defectops data ...`: import, version, profile, check out and push datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from defectops import data_versions as dv
from defectops.cli_support import MODEL_NAME_OPTION, PARAMS_OPTION, console, step_errors
from defectops.components.ingest import cli as ingest_cli
from defectops.config import load_step_config

app = typer.Typer(help="Datasets: import your own images; list DVC-tracked dataset versions.", no_args_is_help=True)
app.command("import")(ingest_cli.import_command)


@app.command("versions")
def data_versions_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                          model_name: str = MODEL_NAME_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Dataset versions (from the commits of dvc.lock), their md5s, and the models trained on each."""

    with step_errors("data versions"):
        settings = load_step_config(dv.DataSettings, "data", params)
        versions = dv.list_versions(Path("."), settings, dv.registered_models_by_dataset(model_name, params))
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


@app.command("profile")
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

    with step_errors("data profile"):
        choice = resolve_size(load_step_config(TrainConfig, "train", params), Path(dataset))
        report = dataset_profile.profile(dataset, imgsz or choice["imgsz"], png or Path(dataset) / "profile.png")
        report["training_size"] = choice
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for item in dataset_profile.render(report):
        console.print(item)


@app.command("checkout")
def data_checkout_command(rev: str = typer.Argument(..., help="A commit from 'defectops data versions'."),
                          params: Path = PARAMS_OPTION) -> None:
    """Put that version's dvc.lock, params.yaml and data in the workspace; 'dvc repro' then reproduces it."""

    with step_errors("data checkout"):
        outs = dv.checkout(Path("."), rev, load_step_config(dv.DataSettings, "data", params))
    for path, info in outs.items():
        console.print(f"{path}: {info['md5']} ({info['files']} files)")
    console.print(f"dvc.lock and params.yaml are now those of {rev}; 'git checkout HEAD -- dvc.lock params.yaml' "
                  "and 'dvc checkout' go back")


@app.command("push")
def data_push_command(params: Path = PARAMS_OPTION) -> None:
    """Send the tracked dataset versions to the DVC remote (data.remote_url)."""

    with step_errors("data push"):
        console.print(dv.push(Path("."), load_step_config(dv.DataSettings, "data", params)))

"""`defectops feedback`: the inspectors' answers out as a dataset version, disagreement rates, Label Studio files."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from defectops.cli_support import PARAMS_OPTION, console, show_metrics, step_errors
from defectops.config import load_step_config
from defectops.feedback.config import FeedbackConfig

app = typer.Typer(help="Inspector feedback: export answers as training data, disagreement, Label Studio interop.",
                  no_args_is_help=True)
RECORDS_OPTION = typer.Option(None, "--records", help="Decision store (default: feedback.records_url).")


def _config(params: Path, records: str | None):

    return load_step_config(FeedbackConfig, "feedback", params, {"records_url": records} if records else None)


@app.command("export")
def export_command(out: Path = typer.Option(None, help="Folder (default: feedback.export_dir)."),
                   records: str = RECORDS_OPTION, params: Path = PARAMS_OPTION,
                   no_dvc: bool = typer.Option(False, "--no-dvc", help="Do not 'dvc add' the folder.")) -> None:
    """Answered images as a canonical dataset (train split), a new DVC version; merge it with ingest.extra_sources."""
    from defectops.feedback.export import export

    with step_errors("feedback export"):
        result = export(_config(params, records), out, track=not no_dvc)
    show_metrics("feedback export", result)


@app.command("stats")
def stats_command(records: str = RECORDS_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Answers and the share inspectors disagreed with, per model version and class."""
    from defectops.feedback.answers import disagreement
    from defectops.records.store import DecisionStore

    with step_errors("feedback stats"):
        store = DecisionStore(_config(params, records).records_url)
        rows = disagreement(store)
        store.close()
    table = Table("version", "class", "answers", "disagreements", "rate")
    for r in rows:
        table.add_row(f"v{r['model_version']}", r["class_name"], str(r["answers"]), str(r["disagreements"]),
                      f"{r['rate']:.1%}")
    console.print(table)


@app.command("labelstudio-export")
def labelstudio_export(out: Path = typer.Argument(..., help="Tasks JSON to import into Label Studio."),
                       limit: int = typer.Option(500, help="Queue items to export."),
                       image_url_prefix: str = typer.Option("", help="Prepended to each archived image's path "
                                                                     "(e.g. '/data/local-files/?d=')."),
                       records: str = RECORDS_OPTION, params: Path = PARAMS_OPTION) -> None:
    """The inspection queue as Label Studio tasks, the model's boxes as pre-annotations."""
    from defectops.feedback.labelstudio import LABEL_CONFIG, tasks

    with step_errors("feedback labelstudio-export"):
        made = tasks(_config(params, records), limit, image_url_prefix)
        out.write_text(json.dumps(made, indent=2) + "\n")
        names = sorted({r["value"]["rectanglelabels"][0] for t in made for p in t["predictions"] for r in p["result"]})
        config_file = out.with_suffix(".label_config.xml")
        config_file.write_text(LABEL_CONFIG.format(labels="".join(f'<Label value="{n}"/>' for n in names)) + "\n")
    console.print(f"{len(made)} tasks in {out}; labelling config in {config_file}")


@app.command("labelstudio-import")
def labelstudio_import(export_file: Path = typer.Argument(..., help="Label Studio's JSON export of those tasks."),
                       records: str = RECORDS_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Label Studio annotations back as answers (the annotator is recorded as the inspector)."""
    from defectops.feedback.labelstudio import import_export

    with step_errors("feedback labelstudio-import"):
        counts = import_export(_config(params, records), export_file)
    console.print(f"{counts['answered']} answers stored; {counts['not annotated']} tasks not annotated yet")

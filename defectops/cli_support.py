"""What every step command shares: the params option, error-to-exit-code mapping, and output."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.console import Console

from defectops.config import load_step_config
from defectops.errors import DefectopsError

console = Console(stderr=True)

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="Settings file; its step section is used.")
MODEL_NAME_OPTION = typer.Option("defectops-detector", "--model-name", help="Registered model name.")
BACKEND_OPTION = typer.Option(None, "--backend", help="mlflow or sagemaker (model package group = --model-name); "
                                                     "default: registry.backend in --params.")



@contextlib.contextmanager
def step_errors(step: str):
    """Turn the errors a user can act on into a readable message and their exit code (2, 3 or 4)."""
    try:
        yield
    except DefectopsError as exc:
        console.print(f"[bold red]{step} failed ({type(exc).__name__}):[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


def show_metrics(step: str, metrics: dict) -> None:
    """Print a step's metrics as JSON on stdout (machines) and a one-line summary on stderr (people)."""
    typer.echo(json.dumps(metrics, indent=2, default=str))
    seconds = metrics.get("seconds")
    console.print(f"[green]{step} done[/]" + (f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""))


def run_step(section: str, config_model, step_fn, *paths, params: Path, overrides: dict | None = None) -> None:
    """Validate the step's params section once, call the step, print its metrics."""
    with step_errors(section):
        show_metrics(section, step_fn(load_step_config(config_model, section, params, overrides), *paths))

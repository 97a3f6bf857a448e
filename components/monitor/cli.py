from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, show_metrics, step_errors


def command(
    reference: Path = typer.Option(Path("deploy/reference.csv"), help="Reference features written by deploy."),
    log: Path = typer.Option(Path("monitoring/inference_log.jsonl"), help="The endpoint's inference log."),
    out: Path = typer.Option(Path("monitoring"), help="Folder for drift_report.html, verdict.json, triggers."),
    window: int = typer.Option(None, help="Override params: most recent inferences to compare."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Compare recent inferences with the reference (Evidently); on drift, write a retraining trigger."""
    from defectops.components.monitor.step import MonitorConfig, monitor
    from defectops.config import load_step_config

    with step_errors("monitor"):
        overrides = {"window": window} if window else {}
        show_metrics("monitor", monitor(load_step_config(MonitorConfig, "monitor", params, overrides),
                                        reference, log, out))

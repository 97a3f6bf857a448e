from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    reference: Path = typer.Option(None, help="Reference features written by deploy (default: those of the "
                                               "model version in the newest log record)."),
    log: Path = typer.Option(Path("monitoring/inference_log.jsonl"), help="The endpoint's inference log."),
    out: Path = typer.Option(Path("monitoring"), help="Folder for drift_report.html, verdict.json, triggers."),
    window: int = typer.Option(None, help="Override params: most recent inferences to compare."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Compare recent inferences with the reference (Evidently); on drift, write a retraining trigger."""
    from defectops.components.monitor.step import MonitorConfig, monitor

    overrides = {"window": window} if window else {}
    if reference is None:
        from defectops.components.monitor.step import reference_for_log

        reference = reference_for_log(log, Path("deploy"))
    run_step("monitor", MonitorConfig, monitor, reference, log, out, params=params, overrides=overrides)

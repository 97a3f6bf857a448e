from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, console, run_step, step_errors
from defectops.config import load_step_config
from defectops.feedback.config import FeedbackConfig

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_every(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", text.strip())
    if not match:
        raise typer.BadParameter(f"'{text}': expected a number with s, m or h, e.g. 30s, 15m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def command(
    reference: Path = typer.Option(None, help="Reference features written by deploy (default: those of the "
                                               "model version in the newest log record)."),
    records: str = typer.Option("monitoring/decisions.db", help="The endpoint's decision store: a SQLite file or a "
                                                               "URL (serve.records_url)."),
    out: Path = typer.Option(Path("monitoring"), help="Folder for drift_report.html, verdict.json, triggers."),
    window: int = typer.Option(None, help="Override params: most recent inferences to compare."),
    every: str = typer.Option(None, help="Keep checking at this interval (e.g. 15m) instead of once."),
    max_runs: int = typer.Option(0, help="With --every: stop after this many checks (0 = run until stopped)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Compare recent inferences with the reference (Evidently) and inspectors' answers with the model; on drift
    or disagreement, alert and start retraining."""
    from defectops.components.monitor.step import MonitorConfig, monitor, reference_for_records

    overrides = {"window": window} if window else {}

    def check() -> None:

        with step_errors("monitor"):
            ref = reference or reference_for_records(records, Path("deploy"))
            feedback = load_step_config(FeedbackConfig, "feedback", params)  # inspectors' disagreement, same check
        run_step("monitor", MonitorConfig, monitor, ref, records, out, feedback, params=params, overrides=overrides)

    if every is None:
        check()
        return
    interval, runs = parse_every(every), 0
    while True:
        try:
            check()
        except (typer.Exit, Exception) as exc:  # noqa: BLE001 - a scheduler keeps its cadence through bad checks
            console.print(f"[yellow]monitor check failed, retrying in {every}: {exc!r}[/]")
        runs += 1
        if max_runs and runs >= max_runs:
            return
        time.sleep(interval)

"""`defectops records`: what the model decided for a part, exports for BI tools, rates per hour and line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from defectops.cli_support import console, step_errors

app = typer.Typer(help="Decision records: query by part or time, export, per-hour statistics.", no_args_is_help=True)
RECORDS_OPTION = typer.Option("monitoring/decisions.db", "--records",
                              help="Decision store: a SQLite file or a SQLAlchemy URL (serve.records_url).")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> datetime | None:
    """'90m', '1h', '7d' (ago) or an ISO time; a clear error otherwise."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([mhd])", text.strip())
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}': expected a duration such as 90m, 1h, 7d or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _store(records: str):
    from defectops.records.store import DecisionStore

    return DecisionStore(records)


@app.command("query")
def query_command(
    part: str = typer.Option(None, "--part", help="Part id (as sent in x-part-id)."),
    since: str = typer.Option(None, help="90m, 1h, 7d or an ISO time."),
    until: str = typer.Option(None, help="Same forms as --since."),
    decision: str = typer.Option(None, help="accept, review or reject."),
    line: str = typer.Option(None, help="Line (x-line)."),
    limit: int = typer.Option(100, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    records: str = RECORDS_OPTION,
) -> None:
    """What the model decided for a part (or in a time range), and which model version decided it."""
    with step_errors("records query"):
        rows = _store(records).query(part=part, since=parse_since(since), until=parse_since(until),
                                     decision=decision, line=line, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("time", "part", "line", "station", "decision", "score", "threshold", "model", "defects", "image")
    for r in rows:
        table.add_row(r["time"], r["part_id"] or "", r["line"] or "", r["station"] or "", r["decision"],
                      f"{r['score']:.3f}", f"{r['threshold']:.3f}", f"v{r['model_version']} {r['precision']}",
                      ", ".join(b["class_name"] for b in r["boxes"]), r["image_uri"] or "")
    console.print(table)


@app.command("export")
def export_command(
    out: Path = typer.Argument(..., help="File to write: .parquet or .csv."),
    since: str = typer.Option(None, help="90m, 1h, 7d or an ISO time."),
    until: str = typer.Option(None, help="Same forms as --since."),
    records: str = RECORDS_OPTION,
) -> None:
    """Decisions to Parquet or CSV for the quality team's BI tool."""
    with step_errors("records export"):
        n = _store(records).export(out, parse_since(since), parse_since(until))
    console.print(f"{n} decisions written to {out}")


@app.command("stats")
def stats_command(since: str = typer.Option("24h", help="90m, 1h, 7d or an ISO time."),
                  records: str = RECORDS_OPTION) -> None:
    """Decisions per hour and line, with reject and review rates."""
    with step_errors("records stats"):
        frame = _store(records).stats(parse_since(since))
    table = Table("hour", "line", "decisions", "reject rate", "review rate")
    for row in frame.itertuples():
        table.add_row(row.hour.isoformat(timespec="minutes"), row.line, str(row.decisions),
                      f"{row.reject_rate:.1%}", f"{row.review_rate:.1%}")
    console.print(table)

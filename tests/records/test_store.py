"""The decision store on SQLite and on a real PostgreSQL server: write, read back, query, export, retain."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from defectops.cli import app
from defectops.records.store import DecisionStore, RecordsError

from ..services import postgres_server


def decision(i: int, start: datetime | None = None, **extra) -> dict:
    """Decision i of 100, made (100 - i) minutes before `start` (default: now)."""
    return {"time": (start or datetime.now(UTC)) - timedelta(minutes=100 - i), "part_id": f"P-{i:05d}",
            "line": "line-3" if i % 2 else "line-1", "station": "cam-1", "model_name": "m", "model_version": "4",
            "role": "champion", "precision": "fp32", "decision": "reject" if i % 10 == 0 else "accept",
            "score": i / 100, "threshold": 0.5, "image_sha256": f"{i:064x}", "latency_ms": 9.5,
            "boxes": [{"class_id": 1, "class_name": "scratch", "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}]
            if i % 10 == 0 else [], "features": {"brightness": 100.0 + i, "contrast": 20.0}, **extra}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request, tmp_path_factory):
    """A store holding decisions 1-50 (each test leaves it so), the ids their writing returned and the time
    they are counted back from."""
    start = datetime.now(UTC)
    if request.param == "sqlite":
        store = DecisionStore(tmp_path_factory.mktemp("store") / "decisions.db")
        yield store, store.record_many([decision(i, start) for i in range(1, 51)]), start
        return
    with postgres_server() as url:
        store = DecisionStore(url)
        yield store, store.record_many([decision(i, start) for i in range(1, 51)]), start


@pytest.fixture
def store(filled):
    return filled[0]


def test_a_record_is_written_and_read_back(filled):
    store, ids, _ = filled
    assert len(ids) == 50 and ids == sorted(ids)
    part = store.query(part="P-00010")
    assert len(part) == 1
    row = part[0]
    assert (row["line"], row["decision"], row["model_version"], row["precision"]) == ("line-1", "reject", "4", "fp32")
    assert row["boxes"][0]["class_name"] == "scratch" and row["features"]["brightness"] == 110.0
    assert datetime.fromisoformat(row["time"]).tzinfo is not None


def test_the_drift_window_is_the_newest_rows_oldest_first(store):
    window = store.window(5)
    assert list(window["part_id"]) == [f"P-{i:05d}" for i in range(46, 51)]
    assert list(window["brightness"]) == [146.0, 147.0, 148.0, 149.0, 150.0]  # features are columns


def test_queries_by_time_line_and_decision(filled):
    store, _, start = filled
    since = start - timedelta(minutes=55, seconds=30)
    recent = store.query(since=since, limit=None)
    assert [r["part_id"] for r in recent][:2] == ["P-00045", "P-00046"]
    rejects = store.query(decision="reject", line="line-1", limit=None)
    assert [r["part_id"] for r in rejects] == [f"P-{i:05d}" for i in (10, 20, 30, 40, 50)]
    stats = store.stats()  # per hour and line, counted in the database
    assert stats["decisions"].sum() == 50 and stats["hour"].dt.minute.eq(0).all()
    assert stats.groupby("line")["decisions"].sum().to_dict() == {"line-1": 25, "line-3": 25}
    assert stats.groupby("line")["rejects"].sum().to_dict() == {"line-1": 5, "line-3": 0}
    versions = store.by_version()
    assert versions[["model_version", "decisions", "rejects", "reject_rate"]].values.tolist() == [["4", 50, 5, 0.1]]


def test_retention_deletes_only_what_is_older(store):
    store.record_many([decision(0, time=datetime.now(UTC) - timedelta(days=200), part_id="OLD")])
    assert store.purge(90) == 1
    assert store.query(part="OLD") == [] and store.count() == 50


def test_export_for_bi_tools_and_the_cli(store, tmp_path):
    assert store.export(tmp_path / "d.parquet") == 50
    frame = pd.read_parquet(tmp_path / "d.parquet")
    assert len(frame) == 50 and {"part_id", "decision", "model_version", "boxes"} <= set(frame.columns)
    with pytest.raises(RecordsError, match=r"export as .parquet or .csv"):
        store.export(tmp_path / "d.xlsx")
    runner = CliRunner()
    shown = runner.invoke(app, ["records", "query", "--part", "P-00020", "--json", "--records", store.url])
    assert shown.exit_code == 0, shown.output
    assert '"decision": "reject"' in shown.output and '"model_version": "4"' in shown.output
    exported = runner.invoke(app, ["records", "export", str(tmp_path / "d.csv"), "--since", "2h", "--records",
                                   store.url])
    assert exported.exit_code == 0 and len(pd.read_csv(tmp_path / "d.csv")) == 50
    stats = runner.invoke(app, ["records", "stats", "--since", "1d", "--records", store.url],
                          env={"COLUMNS": "200"})
    assert stats.exit_code == 0 and "line-3" in stats.output and "line-1" in stats.output
    bad = runner.invoke(app, ["records", "query", "--since", "yesterday", "--records", store.url])
    assert bad.exit_code == 2 and "expected a duration" in bad.output


def test_a_process_killed_mid_write_leaves_a_store_that_opens_and_accepts_the_next_record(tmp_path):
    """A writer killed with SIGKILL in the middle of its transactions, then garbage on the WAL's tail."""
    path = tmp_path / "decisions.db"
    DecisionStore(path).record_many([decision(1)])
    row = {**decision(2), "time": decision(2)["time"].isoformat()}
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from defectops.records.store import DecisionStore\n"
        f"s, row = DecisionStore({str(path)!r}), {row!r}\n"
        "while True: s.record_many([row] * 198)\n")])
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while DecisionStore(path).count() < 1000 and datetime.now(UTC) < deadline:
        pass
    writer.kill()
    writer.wait()
    with open(f"{path}-wal", "ab") as wal:  # what a power cut can leave: a half-written frame
        wal.write(os.urandom(3000))
    store = DecisionStore(path)
    before = store.count()
    assert before >= 1000 and (before - 1) % 198 == 0  # whole transactions only
    store.record_many([decision(7, part_id="AFTER-CRASH")])
    assert store.query(part="AFTER-CRASH")[0]["part_id"] == "AFTER-CRASH"
    assert len(store.window(500)) == 500
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)

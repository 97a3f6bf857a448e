"""The decision store: every decision the endpoint makes, queryable by part, time, line and decision.

SQLite in WAL mode by default (one file, crash-safe: a transaction is there whole or not at all, so a
process killed mid-write never leaves a torn record), PostgreSQL by URL for a plant. A drift check
reads its window by index, so its cost does not grow with history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import case, create_engine, delete, event, func, insert, select, update

from defectops.errors import DefectopsError
from defectops.records.schema import decisions, metadata, outbox

DEFAULT_URL = "monitoring/decisions.db"
COLUMNS = [c.name for c in decisions.columns]


class RecordsError(DefectopsError):
    """The decision store cannot be opened or a query is malformed."""


def url_for(location: str | Path) -> str:
    """A SQLAlchemy URL: given as one (`postgresql+psycopg://...`), or a file path for SQLite."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (drift checks, queries) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; a power cut loses at most the tail
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class DecisionStore:
    def __init__(self, location: str | Path = DEFAULT_URL):
        self.url = url_for(location)
        try:
            self.engine = create_engine(self.url, pool_pre_ping=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
            for index in decisions.indexes:  # a store created by an older version gains indexes added since
                index.create(self.engine, checkfirst=True)
        except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver, a server down: say which
            raise RecordsError(f"decision store {self.display_url()}: cannot open ({type(exc).__name__}: {exc}); "
                               "expected a file path or a URL such as postgresql+psycopg://user@host/db") from None

    def display_url(self) -> str:
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001
            return "(unparseable URL)"

    # -- writing -----------------------------------------------------------------------------
    def record_many(self, rows: list[dict], messages: list[dict | None] | None = None) -> list[int]:
        """Insert decisions (and their outbox messages) in one transaction; returns the new ids."""
        if not rows:
            return []
        with self.engine.begin() as conn:
            # One multi-row INSERT ... RETURNING: the batch costs one statement, not one per decision.
            ids = list(conn.execute(insert(decisions).returning(decisions.c.id, sort_by_parameter_order=True),
                                    [_row_values(row) for row in rows]).scalars())
            now = datetime.now(UTC)
            queued = [{"decision_id": new_id, "dedupe_key": m["dedupe_key"].format(id=new_id), "topic": m["topic"],
                       "payload": json.dumps({**m["payload"], "record_id": new_id}), "created": now, "attempts": 0}
                      for new_id, m in zip(ids, messages or [None] * len(ids)) if m is not None]
            if queued:
                conn.execute(insert(outbox), queued)
        return ids

    def purge(self, retention_days: float) -> int:
        """Delete decisions older than the retention (and delivered outbox rows with them)."""
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        with self.engine.begin() as conn:
            removed = conn.execute(delete(decisions).where(decisions.c.time < cutoff)).rowcount
            conn.execute(delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.created < cutoff))
        return removed

    # -- reading -----------------------------------------------------------------------------
    def window(self, n: int) -> pd.DataFrame:
        """The newest `n` decisions, oldest first, features as columns: what a drift check compares."""
        query = select(decisions).order_by(decisions.c.id.desc()).limit(n)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)][::-1]
        return pd.DataFrame([{**json.loads(r.pop("features")), **r} for r in rows])

    def query(self, part: str | None = None, since: datetime | None = None, until: datetime | None = None,
              decision: str | None = None, line: str | None = None, limit: int | None = 1000) -> list[dict]:
        query = select(decisions).order_by(decisions.c.id)
        for column, value in ((decisions.c.part_id, part), (decisions.c.decision, decision),
                              (decisions.c.line, line)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(decisions.c.time >= _utc(since))
        if until is not None:
            query = query.where(decisions.c.time < _utc(until))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_decoded(dict(r._mapping)) for r in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(decisions)).scalar_one()

    def _counts(self, keys: list, since: datetime | None) -> pd.DataFrame:
        """Decisions, rejects and reviews grouped in the database (a day is 1.7 M rows: never fetched)."""
        counted = [func.count().label("decisions"),
                   func.sum(case((decisions.c.decision == "reject", 1), else_=0)).label("rejects"),
                   func.sum(case((decisions.c.decision == "review", 1), else_=0)).label("reviews")]
        query = select(*keys, *counted).group_by(*keys).order_by(*keys)
        if since is not None:
            query = query.where(decisions.c.time >= _utc(since))
        with self.engine.connect() as conn:
            frame = pd.DataFrame([dict(r._mapping) for r in conn.execute(query)],
                                 columns=[k.name for k in keys] + ["decisions", "rejects", "reviews"])
        frame["reject_rate"] = frame["rejects"] / frame["decisions"].clip(lower=1)
        frame["review_rate"] = frame["reviews"] / frame["decisions"].clip(lower=1)
        return frame

    def _hour(self):
        if self.engine.dialect.name == "sqlite":
            return func.strftime("%Y-%m-%dT%H:00:00+00:00", decisions.c.time).label("hour")
        return func.date_trunc("hour", decisions.c.time).label("hour")

    def stats(self, since: datetime | None = None) -> pd.DataFrame:
        """Decisions per hour and line, with reject and review rates."""
        frame = self._counts([self._hour(), func.coalesce(decisions.c.line, "-").label("line")], since)
        frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
        return frame

    def by_version(self, since: datetime | None = None) -> pd.DataFrame:
        """Decisions and reject/review rates per model version: what each version does on the line."""
        return self._counts([decisions.c.model_version], since)

    def export(self, out: Path, since: datetime | None = None, until: datetime | None = None) -> int:
        """Decisions to Parquet or CSV (by the file's suffix), for the quality team's BI tool."""
        frame = pd.DataFrame(self.query(since=since, until=until, limit=None), columns=COLUMNS)
        frame["boxes"] = frame["boxes"].map(json.dumps)
        frame["features"] = frame["features"].map(json.dumps)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        elif out.suffix == ".csv":
            frame.to_csv(out, index=False)
        else:
            raise RecordsError(f"{out}: export as .parquet or .csv")
        return len(frame)

    # -- outbox ------------------------------------------------------------------------------
    def pending(self, limit: int = 100) -> list[dict]:
        query = select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_sent(self, outbox_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == outbox_id).values(
                sent_at=datetime.now(UTC), attempts=outbox.c.attempts + 1, last_error=None))

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == outbox_id).values(
                attempts=outbox.c.attempts + 1, last_error=error[:500]))

    def pending_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                                ).scalar_one()

    def close(self) -> None:
        self.engine.dispose()


def _row_values(row: dict) -> dict:
    values = {k: row.get(k) for k in COLUMNS if k != "id"}
    values["time"] = _utc(values["time"]) if isinstance(values["time"], datetime) else datetime.fromisoformat(
        values["time"])
    values["boxes"] = json.dumps(row.get("boxes", []))
    values["features"] = json.dumps(row.get("features", {}))
    return values


def _decoded(row: dict) -> dict:
    row["boxes"] = json.loads(row["boxes"])
    row["features"] = json.loads(row["features"])
    row["time"] = _utc(row["time"]).isoformat(timespec="milliseconds")
    return row

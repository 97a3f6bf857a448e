"""The inspection queue at line volume: how long a page's queries take over millions of stored decisions.

    .venv/bin/python bench/inspection_queue.py [--rows 2000000] [--answered 2000]

Fills a SQLite store (WAL) with `--rows` decisions as the endpoint writes them (4 % review, 3 % reject,
archived; 1 % of accepts archived), answers the newest `--answered` reviews, then times what the queue
page runs: the next item (newest first, and most uncertain first), the 100-item waiting count, the
per-shift count and the disagreement GROUP BY. The reference is the first implementation's single query
(ORDER BY review-first, id over every archived decision), timed in the same run on the same store.
Target: every page query well under 100 ms at any history length.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np


def fill(store, rows: int, batch: int = 100_000) -> float:
    from sqlalchemy import insert

    from defectops.records.schema import decisions

    rng = np.random.default_rng(0)
    start_time = datetime.now(UTC) - timedelta(seconds=rows * 0.05)
    started = time.perf_counter()
    for first in range(0, rows, batch):
        n = min(batch, rows - first)
        scores, keep = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
        chunk = []
        for i in range(n):
            decision = "reject" if scores[i] > 0.97 else "review" if scores[i] > 0.93 else "accept"
            archived = decision != "accept" or keep[i] < 0.01
            chunk.append({"time": start_time + timedelta(seconds=(first + i) * 0.05), "line": "line-1",
                          "station": "cam-1", "part_id": f"P-{first + i:09d}", "model_name": "defectops-detector",
                          "model_version": "7", "role": "champion", "precision": "fp32", "decision": decision,
                          "score": float(scores[i]), "threshold": 0.95, "boxes": "[]", "features": "{}",
                          "image_sha256": f"{first + i:064x}", "latency_ms": 9.8,
                          "image_uri": f"archive/{first + i:064x}.png" if archived else None})
        with store.engine.begin() as conn:
            conn.execute(insert(decisions), chunk)
    return time.perf_counter() - started


def timed(fn, repeats: int = 5) -> float:
    """Median milliseconds of `repeats` calls (the first one warms SQLite's page cache)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def first_implementation(store, config, limit: int) -> list:
    """The reference: one query, every archived decision sorted review-first, then by id."""
    from sqlalchemy import and_, case, exists, or_, select

    from defectops.feedback.answers import _sampled
    from defectops.records.schema import answers, decisions

    wanted = or_(decisions.c.decision == "review",
                 and_(decisions.c.decision == "reject", _sampled(config.sample_rates["reject"])),
                 and_(decisions.c.decision == "accept", _sampled(config.sample_rates["accept"])))
    query = (select(decisions).where(decisions.c.image_uri.is_not(None), wanted,
                                     ~exists().where(answers.c.record_id == decisions.c.id))
             .order_by(case((decisions.c.decision == "review", 0), else_=1), decisions.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--answered", type=int, default=2000)
    args = parser.parse_args()
    from sqlalchemy import select

    from defectops.feedback import answers
    from defectops.feedback.config import FeedbackConfig
    from defectops.records.schema import decisions
    from defectops.records.store import DecisionStore

    work = Path(tempfile.mkdtemp(prefix="defectops-queue-bench-"))
    store = DecisionStore(work / "decisions.db")
    fill_s = fill(store, args.rows)
    with store.engine.connect() as conn:
        newest_reviews = [r[0] for r in conn.execute(select(decisions.c.id).where(decisions.c.decision == "review")
                                                     .order_by(decisions.c.id.desc()).limit(args.answered))]
    started = time.perf_counter()
    for n, record_id in enumerate(newest_reviews):
        answers.answer(store, record_id, "ines", "defect" if n % 3 else "good", [])
    answer_ms = (time.perf_counter() - started) * 1000 / max(len(newest_reviews), 1)
    newest, uncertain = FeedbackConfig(), FeedbackConfig(order="uncertain")
    since = datetime.now(UTC) - timedelta(hours=8)
    rows = [("next item, newest first", timed(lambda: answers.queue(store, newest, limit=1))),
            ("next item, most uncertain first", timed(lambda: answers.queue(store, uncertain, limit=1))),
            ("waiting count (100 items)", timed(lambda: answers.queue(store, newest, limit=100))),
            ("answers this shift", timed(lambda: answers.answered_since(store, "ines", since))),
            ("disagreement per version and class", timed(lambda: answers.disagreement(store))),
            ("reference: first implementation's single query, next item",
             timed(lambda: first_implementation(store, newest, 1), repeats=3))]
    print(f"\n{args.rows:,} decisions ({fill_s:.0f} s to fill), newest {len(newest_reviews):,} reviews answered "
          f"({answer_ms:.1f} ms per answer)")
    print("| query | median ms |\n|---|---:|")
    for label, ms in rows:
        print(f"| {label} | {ms:.1f} |")
    print(json.dumps({label: round(ms, 2) for label, ms in rows}))
    store.close()
    for path in work.glob("decisions.db*"):
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()

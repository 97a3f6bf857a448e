"""Inspectors' answers, kept in the decision store beside the decisions they are about.

The queue is a query, not a copy: every `review` decision with an archived image, plus a fixed
pseudo-random share of archived rejects and accepts, that nobody has answered yet. At 1.7 M
decisions a day it is computed in the database, newest (or most uncertain) first, a page at a time.
An answer records who, when, the record, the model's decision and whether the inspector disagreed,
so the disagreement rate per model version and class is a GROUP BY, on the page and in /metrics.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, and_, cast, delete, exists, func, insert, or_, select

from defectops import identity
from defectops.errors import DefectopsError
from defectops.feedback.config import FeedbackConfig
from defectops.records.schema import answers, decisions
from defectops.records.store import DecisionStore

ANSWERS = ("good", "defect")
SAMPLE_MODULUS = 1000


class FeedbackError(DefectopsError):
    """An answer that cannot be taken: no such record, no image, a malformed box."""


def _sampled(share: float):
    """A fixed pseudo-random `share` of records by id (the same items stay in the queue between page loads;
    a multiplicative hash spreads the pick over time instead of taking runs of consecutive parts)."""
    return (cast(decisions.c.id, BigInteger) * 7919) % SAMPLE_MODULUS < round(share * SAMPLE_MODULUS)


CANDIDATES = 2000  # newest unanswered items ranked by uncertainty: a bounded read however long the history


def queue(store: DecisionStore, config: FeedbackConfig, limit: int = 50, skip: tuple[int, ...] = ()) -> list[dict]:
    """Unanswered images for inspectors: every review first, then the sampled rejects and accepts. Each part is
    read newest first along the (decision, id) index, so a page costs the same at 1.7 M decisions a day."""
    rates = config.sample_rates
    items: list[dict] = []
    for wanted in (decisions.c.decision == "review",
                   or_(and_(decisions.c.decision == "reject", _sampled(rates.get("reject", 0.0))),
                       and_(decisions.c.decision == "accept", _sampled(rates.get("accept", 0.0))))):
        if len(items) >= limit:
            break
        query = select(decisions).where(wanted, decisions.c.image_uri.is_not(None),
                                        ~exists().where(answers.c.record_id == decisions.c.id))
        if skip:
            query = query.where(decisions.c.id.not_in(list(skip)))
        newest = query.order_by(decisions.c.id.desc())
        with store.engine.connect() as conn:
            if config.order == "newest":
                rows = [dict(r._mapping) for r in conn.execute(newest.limit(limit - len(items)))]
            else:
                rows = [dict(r._mapping) for r in conn.execute(newest.limit(CANDIDATES))]
                rows = sorted(rows, key=_distance)[:limit - len(items)]
        items += [_item(r) for r in rows]
    return items


def _distance(row: dict) -> tuple[float, int]:
    """How far the score is from the threshold, relative to it (ties: newest first)."""
    threshold = row["threshold"] or 1e-9
    return abs(row["score"] - threshold) / threshold, -row["id"]


def record(store: DecisionStore, record_id: int) -> dict:
    with store.engine.connect() as conn:
        row = conn.execute(select(decisions).where(decisions.c.id == record_id)).first()
    if row is None:
        raise FeedbackError(f"record {record_id}: no such decision in {store.display_url()}")
    return _item(dict(row._mapping))


def _item(row: dict) -> dict:
    row["boxes"] = json.loads(row["boxes"])
    row.pop("features", None)
    return row


def _clean_boxes(boxes: list, where: str) -> list[dict]:
    """[{class_name, box: [x1, y1, x2, y2]}] with x1 < x2, y1 < y2 in image pixels; anything else is an error."""
    if not isinstance(boxes, list):
        raise FeedbackError(f"{where}: boxes must be a list of {{class_name, box: [x1, y1, x2, y2]}}")
    clean = []
    for i, b in enumerate(boxes):
        try:
            name = str(b["class_name"]).strip()
            x1, y1, x2, y2 = (float(v) for v in b["box"])
        except (KeyError, TypeError, ValueError):
            raise FeedbackError(f"{where}: box {i} is {b!r}; expected {{class_name, box: [x1, y1, x2, y2]}}") from None
        if not name or not (x2 > x1 and y2 > y1) or min(x1, y1) < 0:
            raise FeedbackError(f"{where}: box {i} ({name!r}, {[x1, y1, x2, y2]}) needs a class and x1 < x2, "
                                "y1 < y2 inside the image")
        clean.append({"class_name": name, "box": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)]})
    return clean


def answer(store: DecisionStore, record_id: int, inspector: str, verdict: str, boxes: list | None = None,
           source: str = "web", at: datetime | None = None) -> dict:
    """Store (or correct) the answer about one decided image; returns it. `defect` without boxes is allowed
    (the inspector saw it but could not outline it): it counts for the rate, not as a training label."""
    person = identity.require_person(inspector, "an inspection answer")
    if verdict not in ANSWERS:
        raise FeedbackError(f"record {record_id}: answer {verdict!r}; expected one of {', '.join(ANSWERS)}")
    decided = record(store, record_id)
    if not decided.get("image_uri"):
        raise FeedbackError(f"record {record_id}: its image was not archived; there is nothing to answer about")
    boxes = _clean_boxes(boxes or [], f"record {record_id}") if verdict == "defect" else []
    model_top = max(decided["boxes"], key=lambda b: b["score"])["class_name"] if decided["boxes"] else None
    model_says_defect = decided["decision"] == "reject"  # a review was below the operating threshold
    row = {"record_id": record_id, "time": at or datetime.now(UTC), "inspector": person, "answer": verdict,
           "boxes": json.dumps(boxes), "model_decision": decided["decision"],
           "model_version": decided["model_version"],
           "class_name": (boxes[0]["class_name"] if boxes else model_top or "defect") if verdict == "defect"
           else (model_top or "good"),
           "disagrees": int(model_says_defect != (verdict == "defect")), "source": source}
    with store.engine.begin() as conn:  # a correction replaces the earlier answer, in one transaction
        conn.execute(delete(answers).where(answers.c.record_id == record_id))
        conn.execute(insert(answers), [row])
    return {**row, "boxes": boxes}


def shift_start(now: datetime, starts: list[int]) -> datetime:
    """When the current shift began (server clock): the latest configured start hour at or before `now`."""
    candidates = [now.replace(hour=h, minute=0, second=0, microsecond=0) - timedelta(days=d)
                  for d in (0, 1) for h in starts]
    return max(c for c in candidates if c <= now)


def answered_since(store: DecisionStore, inspector: str, since: datetime) -> int:
    query = select(func.count()).select_from(answers).where(answers.c.inspector == identity.normalise(inspector),
                                                             answers.c.time >= since)
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def disagreement(store: DecisionStore, since: datetime | None = None) -> list[dict]:
    """Answers and the share the inspectors disagreed with, per model version and class."""
    query = (select(answers.c.model_version, answers.c.class_name, func.count().label("answers"),
                    func.sum(answers.c.disagrees).label("disagreements"))
             .group_by(answers.c.model_version, answers.c.class_name)
             .order_by(answers.c.model_version, answers.c.class_name))
    if since is not None:
        query = query.where(answers.c.time >= since)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for r in rows:
        r["disagreements"] = int(r["disagreements"] or 0)
        r["rate"] = r["disagreements"] / max(r["answers"], 1)
    return rows


def recent_disagreement(store: DecisionStore, model_version: str, window: int) -> dict:
    """The newest `window` answers about one version: how many, and the share the inspectors overruled."""
    newest = (select(answers.c.disagrees).where(answers.c.model_version == str(model_version))
              .order_by(answers.c.id.desc()).limit(window).subquery())
    with store.engine.connect() as conn:
        n, disagreed = conn.execute(select(func.count(), func.sum(newest.c.disagrees))).one()
    return {"model_version": str(model_version), "answers": int(n), "disagreements": int(disagreed or 0),
            "rate": int(disagreed or 0) / n if n else 0.0}


def answered(store: DecisionStore, after_id: int = 0) -> list[dict]:
    """Every answer with its decision's image and part, oldest first: what an export turns into data."""
    query = (select(answers, decisions.c.image_uri, decisions.c.image_sha256, decisions.c.part_id,
                    decisions.c.boxes.label("model_boxes"), decisions.c.score, decisions.c.threshold)
             .join(decisions, decisions.c.id == answers.c.record_id)
             .where(answers.c.id > after_id).order_by(answers.c.id))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for r in rows:
        r["boxes"] = json.loads(r["boxes"])
        r["model_boxes"] = json.loads(r["model_boxes"])
    return rows

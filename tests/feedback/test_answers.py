"""Inspectors' answers in the decision store, on SQLite and a real PostgreSQL: the queue, answers, rates."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from defectops.feedback import answers
from defectops.feedback.config import FeedbackConfig
from defectops.records.archive import ImageArchive
from defectops.records.store import DecisionStore

from ..services import postgres_server


def png(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def decide(i: int, decision: str, score: float, archive: ImageArchive | None, version: str = "3", **extra) -> dict:
    import hashlib

    body = png(i)
    sha = hashlib.sha256(body).hexdigest()
    return {"time": datetime.now(UTC) - timedelta(seconds=1000 - i), "part_id": f"P-{i}", "line": "line-1",
            "station": "cam", "model_name": "m", "model_version": version, "role": "champion", "precision": "fp32",
            "decision": decision, "score": score, "threshold": 0.5, "image_sha256": sha, "latency_ms": 5.0,
            "image_uri": archive.store(sha, body, "PNG") if archive else None, "features": {},
            "boxes": [{"class_id": 0, "class_name": "scratch", "score": score, "box": [4.0, 4.0, 20.0, 20.0]}]
            if score > 0.1 else [], **extra}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield DecisionStore(tmp_path / "decisions.db")
        return
    with postgres_server() as url:
        yield DecisionStore(url)


def test_queue_holds_reviews_first_then_a_fixed_sample_and_drops_answered_items(store, tmp_path):
    archive = ImageArchive(tmp_path / "archive")
    rows = ([decide(i, "review", 0.3 + i / 1000, archive) for i in range(10)]
            + [decide(100 + i, "reject", 0.9, archive) for i in range(200)]
            + [decide(400 + i, "accept", 0.05, archive) for i in range(100)]
            + [decide(600, "review", 0.4, None)])  # not archived: nothing to show an inspector
    ids = store.record_many(rows)
    config = FeedbackConfig(sample_rates={"reject": 0.1, "accept": 0.0})
    queued = answers.queue(store, config, limit=1000)
    kinds = [q["decision"] for q in queued]
    assert kinds[:10] == ["review"] * 10 and set(kinds[10:]) == {"reject"}
    assert [q["id"] for q in queued[:10]] == sorted(ids[:10], reverse=True)  # newest first
    assert 8 <= kinds.count("reject") <= 32  # ~10 % of 200, spread by a hash of the id
    assert answers.queue(store, config, limit=1000) == queued  # the sample is stable between page loads

    uncertain = answers.queue(store, FeedbackConfig(order="uncertain", sample_rates={"reject": 0.0, "accept": 0.0}))
    assert [q["score"] for q in uncertain] == sorted((q["score"] for q in uncertain), reverse=True)

    answers.answer(store, ids[9], "Ines", "defect", [{"class_name": "scratch", "box": [1, 1, 9, 9]}])
    later = answers.queue(store, config, limit=1000)
    assert ids[9] not in [q["id"] for q in later] and len(later) == len(queued) - 1
    assert ids[8] not in [q["id"] for q in answers.queue(store, config, limit=1000, skip=(ids[8],))]


def test_disagreement_per_version_and_class_counts_what_the_inspector_overruled(store, tmp_path):
    archive = ImageArchive(tmp_path / "archive")
    ids = store.record_many([decide(0, "reject", 0.9, archive), decide(1, "reject", 0.8, archive),
                             decide(2, "review", 0.3, archive), decide(3, "accept", 0.05, archive),
                             decide(4, "accept", 0.02, archive, version="4")])
    answers.answer(store, ids[0], "ines", "defect", [{"class_name": "scratch", "box": [2, 2, 9, 9]}])  # agrees
    answers.answer(store, ids[1], "ines", "good")  # a false reject: disagrees, counted under the model's class
    answers.answer(store, ids[2], "ines", "defect", [{"class_name": "pit", "box": [3, 3, 8, 8]}])  # was below thr
    answers.answer(store, ids[3], "ines", "good")  # agrees
    answers.answer(store, ids[4], "ines", "defect")  # outlined nowhere: counts for the rate only
    rates = {(r["model_version"], r["class_name"]): (r["answers"], r["disagreements"])
             for r in answers.disagreement(store)}
    assert rates == {("3", "scratch"): (2, 1), ("3", "pit"): (1, 1), ("3", "good"): (1, 0), ("4", "defect"): (1, 1)}
    recent = answers.recent_disagreement(store, "3", window=3)  # the newest three answers about v3
    assert (recent["answers"], recent["disagreements"]) == (3, 2)

    answers.answer(store, ids[1], "ines", "defect", [{"class_name": "scratch", "box": [2, 2, 9, 9]}])  # corrected
    assert answers.recent_disagreement(store, "3", window=10)["disagreements"] == 1
    assert answers.answered_since(store, "INES", datetime.now(UTC) - timedelta(minutes=5)) == 5


def test_bad_answers_are_refused_naming_the_record(store, tmp_path):
    ids = store.record_many([decide(0, "review", 0.3, ImageArchive(tmp_path / "a")), decide(1, "review", 0.3, None)])
    with pytest.raises(answers.FeedbackError, match=f"record {ids[0]}: answer 'maybe'"):
        answers.answer(store, ids[0], "ines", "maybe")
    with pytest.raises(answers.FeedbackError, match=f"record {ids[0]}: box 0 .* x1 < x2"):
        answers.answer(store, ids[0], "ines", "defect", [{"class_name": "pit", "box": [9, 9, 2, 2]}])
    with pytest.raises(answers.FeedbackError, match=f"record {ids[1]}: its image was not archived"):
        answers.answer(store, ids[1], "ines", "good")
    with pytest.raises(answers.FeedbackError, match="record 999999: no such decision"):
        answers.answer(store, 999999, "ines", "good")
    from defectops.identity import IdentityError

    with pytest.raises(IdentityError, match="service identity"):
        answers.answer(store, ids[0], "service:kfp", "good")
    assert answers.disagreement(store) == []  # nothing half-written


@pytest.mark.parametrize(("now", "starts", "expected"), [
    ("2026-11-24T15:30", [6, 14, 22], "2026-11-24T14:00"),
    ("2026-11-24T03:10", [6, 14, 22], "2026-11-23T22:00"),
    ("2026-11-24T06:00", [6, 18], "2026-11-24T06:00"),
])
def test_shift_start_is_the_last_configured_hour(now, starts, expected):
    assert answers.shift_start(datetime.fromisoformat(now), starts) == datetime.fromisoformat(expected)


def test_feedback_settings_are_checked_at_the_edge():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a share"):
        FeedbackConfig(sample_rates={"reject": 1.5})
    with pytest.raises(ValidationError, match="hours 0-23"):
        FeedbackConfig(shift_starts=[25])
    assert json.loads(FeedbackConfig().model_dump_json())["sample_rates"] == {"reject": 0.1, "accept": 1.0}

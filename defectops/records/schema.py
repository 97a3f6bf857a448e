"""The decision store's tables (SQLAlchemy Core): one row per image decided, the MES outbox, and the
inspectors' answers about decided images (`defectops.feedback`)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("line", String(64)),
    Column("station", String(64)),
    Column("part_id", String(128)),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("role", String(16), nullable=False),  # champion or canary
    Column("precision", String(16), nullable=False),  # fp32, int8, ...
    Column("decision", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("boxes", Text, nullable=False),  # JSON list of {class_id, class_name, score, box}
    Column("features", Text, nullable=False),  # JSON object: the drift features of this image
    Column("image_sha256", String(64), nullable=False),
    Column("image_uri", Text),  # where the archived image lies (reject/review, a sample of accept)
    Column("latency_ms", Float, nullable=False),
    Index("ix_decisions_time", "time"),
    Index("ix_decisions_part", "part_id"),
    Index("ix_decisions_decision_id", "decision", "id"),  # the inspection queue: newest reviews, by index
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", Integer, nullable=False),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("topic", String(256), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Index("ix_outbox_pending", "sent_at", "id"),
)

answers = Table(
    "answers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", Integer, nullable=False, unique=True),  # decisions.id: one answer per image decided
    Column("time", DateTime(timezone=True), nullable=False),
    Column("inspector", String(128), nullable=False),  # normalised name of the person who answered
    Column("answer", String(16), nullable=False),  # good or defect
    Column("boxes", Text, nullable=False),  # JSON list of {class_name, box: [x1, y1, x2, y2]} in image pixels
    Column("model_decision", String(16), nullable=False),  # what the model said: accept, review or reject
    Column("model_version", String(32), nullable=False),
    Column("class_name", String(128), nullable=False),  # counted under: the inspector's class, else the model's
    Column("disagrees", Integer, nullable=False),  # 1: the model rejected a good part or passed a defective one
    Column("source", String(32), nullable=False),  # web (the queue page) or labelstudio
    Index("ix_answers_time", "time"),
)

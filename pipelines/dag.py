"""The training DAG, declared once. Engines (DVC today; Kubeflow and SageMaker next) render it.

Each stage is one step command; its inputs and outputs are paths, so the edges follow from
which stage writes what another reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SHARED_CODE = ("pipelines/config.py", "pipelines/dataset.py")


@dataclass(frozen=True)
class Stage:
    name: str
    args: tuple[str, ...]  # after `defectops <name>`
    deps: tuple[str, ...] = ()  # data paths read
    outs: tuple[str, ...] = ()  # data paths written
    params: tuple[str, ...] = ()  # params.yaml sections
    code: tuple[str, ...] = field(default=())  # source paths whose change invalidates the stage

    @property
    def command(self) -> str:
        return " ".join(("defectops", self.name, *self.args))


TRAINING_DAG: tuple[Stage, ...] = (
    Stage("ingest", ("--out", "data/raw"), outs=("data/raw",), params=("ingest",),
          code=("components/ingest", *SHARED_CODE)),
    Stage("validate", ("--dataset", "data/raw", "--report", "reports/validate"), deps=("data/raw",),
          outs=("reports/validate",), params=("validate",), code=("components/validate", *SHARED_CODE)),
    Stage("augment", ("--dataset", "data/raw", "--out", "data/augmented"),
          deps=("data/raw", "reports/validate"), outs=("data/augmented",), params=("augment",),
          code=("components/augment", *SHARED_CODE)),
    Stage("train", ("--dataset", "data/augmented", "--out", "models/train"), deps=("data/augmented",),
          outs=("models/train",), params=("train",), code=("components/train", *SHARED_CODE)),
    Stage("evaluate", ("--model", "models/train", "--dataset", "data/raw", "--out", "reports/evaluate"),
          deps=("models/train", "data/raw"), outs=("reports/evaluate",), params=("evaluate",),
          code=("components/evaluate", *SHARED_CODE)),
    Stage("register", ("--model", "models/train", "--evaluation", "reports/evaluate", "--out",
                       "reports/register"),
          deps=("models/train", "reports/evaluate"), outs=("reports/register",), params=("register",),
          code=("components/register", "pipelines/registry.py")),
)


def edges(stages: tuple[Stage, ...] = TRAINING_DAG) -> set[tuple[str, str]]:
    """(producer, consumer) pairs: a stage depends on whichever stage writes a path it reads."""
    producer = {out: s.name for s in stages for out in s.outs}
    return {(producer[d], s.name) for s in stages for d in s.deps if d in producer}


def topological_order(stages: tuple[Stage, ...] = TRAINING_DAG) -> list[str]:
    pending = {s.name for s in stages}
    graph = edges(stages)
    order = []
    while pending:
        ready = sorted(n for n in pending if not any(c == n and p in pending for p, c in graph))
        if not ready:
            raise ValueError(f"the DAG has a cycle among {sorted(pending)}")
        order += ready
        pending -= set(ready)
    return order

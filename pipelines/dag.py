"""The training DAG, declared once. The DVC, Kubeflow and SageMaker engines all render it.

Each stage is one step command; its inputs and outputs are paths, so the edges follow from
which stage writes what another reads. On an engine a path becomes an artifact named after it
(`data/raw` -> `data_raw`). Two more facts are declared here rather than in any engine: which
stage may fan out over hyperparameter trials (`tunable`), and the evaluation gate (a value a
stage emits from one of its reports, and the stage that only runs when it is true).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    name: str
    args: tuple[str, ...]  # after `defectops <name>`
    deps: tuple[str, ...] = ()  # data paths read
    outs: tuple[str, ...] = ()  # data paths written
    params: tuple[str, ...] = ()  # params.yaml sections
    code: tuple[str, ...] = field(default=())  # files besides its source whose change invalidates the stage (the
    # gate's learned profile); the source files are read off its command's imports (`import_graph`)
    emits: tuple[tuple[str, str, str], ...] = ()  # (name, report path, dotted key): values engines branch on
    when: str | None = None  # run only if this emitted value is true (the evaluation gate)
    tunable: bool = False  # cloud engines may fan this stage out over hyperparameter trials first
    param_deps: tuple[str, ...] = ()  # dotted params keys holding more data paths the stage reads (the local
    # engine watches them: a new export of inspector feedback re-runs ingest)

    def deps_in(self, params: dict) -> tuple[str, ...]:
        """The paths this run's params name under `param_deps`, in order."""
        found = []
        for key in self.param_deps:
            value: object = params
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            found += [str(v) for v in (value or [])]
        return tuple(found)

    @property
    def command(self) -> str:
        return " ".join(("defectops", self.name, *self.args))

    @property
    def inputs(self) -> dict[str, str]:
        """Artifact name -> declared path, for what the stage reads."""
        return {artifact_name(d): d for d in self.deps}

    @property
    def outputs(self) -> dict[str, str]:
        return {artifact_name(o): o for o in self.outs}


def artifact_name(path: str) -> str:
    """The name a declared path has on an engine: `data/raw` -> `data_raw`."""
    return path.strip("/").replace("/", "_").replace("-", "_").replace(".", "_")


TRAINING_DAG: tuple[Stage, ...] = (
    Stage("ingest", ("--out", "data/raw"), outs=("data/raw",), params=("ingest",),
          param_deps=("ingest.extra_sources",)),
    # The gate: bad files are set aside in data/quarantine; later stages only see data/validated.
    Stage("validate", ("--dataset", "data/raw", "--report", "reports/validate", "--out", "data/validated",
                       "--quarantine", "data/quarantine"), deps=("data/raw",),
          outs=("reports/validate", "data/validated", "data/quarantine"), params=("validate",),
          code=("data/gate",)),
    Stage("augment", ("--dataset", "data/validated", "--out", "data/augmented"),
          deps=("data/validated",), outs=("data/augmented",), params=("augment",)),
    Stage("train", ("--dataset", "data/augmented", "--out", "models/train"), deps=("data/augmented",),
          outs=("models/train",), params=("train", "registry"), tunable=True),
    Stage("evaluate", ("--model", "models/train", "--dataset", "data/validated", "--out", "reports/evaluate"),
          deps=("models/train", "data/validated"), outs=("reports/evaluate",), params=("evaluate", "registry"),
          emits=(("gate_passed", "reports/evaluate/metrics.json", "gate.passed"),)),
    Stage("register", ("--model", "models/train", "--evaluation", "reports/evaluate", "--out",
                       "reports/register"),
          deps=("models/train", "reports/evaluate"), outs=("reports/register",), params=("register", "registry"),
          when="gate_passed"),
)
STAGES: dict[str, Stage] = {s.name: s for s in TRAINING_DAG}


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


def stage_of(node: str) -> str:
    """The DAG stage an engine's node belongs to: engines name helper nodes `<stage>-<role>`."""
    for name in sorted(STAGES, key=len, reverse=True):
        if node == name or node.startswith(f"{name}-"):
            return name
    raise KeyError(f"engine node '{node}' belongs to no stage of the DAG ({', '.join(STAGES)})")


def collapse(node_edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """An engine's node graph seen at stage level (helper nodes folded into their stage)."""
    return {(stage_of(a), stage_of(b)) for a, b in node_edges if stage_of(a) != stage_of(b)}

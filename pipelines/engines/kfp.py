"""The Kubeflow Pipelines v2 engine: the declared DAG as a KFP pipeline.

Two flavours of the same components, both generated from the DAG's declaration and wired by one function:
- `cluster`: container components on the defectops image, each running
  `defectops pipeline stage NAME --path declared=artifact ...` (the step CLI); training gets a
  GPU on the spot node pool, a PVC for checkpoints and retries, so a reclaimed node resumes.
- `local`: lightweight Python components (their source written from the declaration) calling the same
  stage adapter in-process, which `kfp.local` runs on this machine (tests, notebooks) with no cluster.
The tunable stage fans out over hyperparameter trials (ParallelFor -> Collected -> best
settings); the register stage sits under `dsl.If` on the evaluation gate.

No `from __future__ import annotations` here: KFP reads the real annotation objects.
"""

import inspect
import json
import linecache
from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output
from pydantic import Field

from defectops.config import StepConfig
from defectops.pipelines.dag import TRAINING_DAG, Stage

DEFAULT_IMAGE = "defectops:0.1.0"
LOCAL_BASE_IMAGE = "python:3.11"
PIPELINE_NAME = "defectops-training"
GPU_NODE_LABEL = ("defectops.io/pool", "gpu-spot")
GPU_TAINT = "nvidia.com/gpu"
CHECKPOINT_PVC = "defectops-checkpoints"
CHECKPOINT_MOUNT = "/checkpoints"


def artifact_type(path: str):
    if path.startswith("data/"):
        return Dataset
    if path.startswith("models/"):
        return Model
    return Artifact


# --- lightweight components (kfp.local): generated from the DAG ------------------------------

def _local_source(stage: Stage) -> str:
    """A lightweight component's source, read off the stage's declaration: a thin call into the stage adapter.
    KFP ships a function's source text to its runner, so the function is written out, not closed over."""
    arguments = ["params_yaml: str", *(f"{n}: Input[{artifact_type(p).__name__}]" for n, p in stage.inputs.items()),
                 *(["settings: dict"] if stage.tunable else []),
                 *(f"{n}: Output[{artifact_type(p).__name__}]" for n, p in stage.outputs.items())]
    paths = ", ".join(f"{p!r}: {n}.path" for n, p in {**stage.inputs, **stage.outputs}.items())
    call = f"run_stage_text({stage.name!r}, params_yaml, {{{paths}}}{', settings' if stage.tunable else ''})"
    if len(stage.emits) > 1:
        raise ValueError(f"stage {stage.name}: kfp.local branches only on a component's single return value, "
                         f"and it emits {len(stage.emits)}")
    head = f"def {stage.name}({', '.join(arguments)}){' -> bool' if stage.emits else ''}:"
    body = f"return bool({call}[{stage.emits[0][0]!r}])" if stage.emits else call
    return f"{head}\n    from defectops.pipelines.engines.stage import run_stage_text\n\n    {body}\n"


def local_function(stage: Stage):
    """The function `_local_source` writes, compiled; its source is kept where `inspect.getsource` (which KFP
    calls) finds it."""
    source = _local_source(stage)
    filename = f"<defectops kfp component '{stage.name}', generated from pipelines/dag.py>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"Input": Input, "Output": Output, "Dataset": Dataset, "Model": Model, "Artifact": Artifact}
    exec(compile(source, filename, "exec"), namespace)  # our own declaration, not input
    return namespace[stage.name]


# --- hyperparameter fan-out helpers (pure glue; the same in both flavours) --------------------

def train_plan(params_yaml: str) -> list[dict]:
    """Trial settings from the declarative search space (trial 0 = current settings)."""
    from defectops.components.tune.step import plan_from_params
    from defectops.pipelines.engines.stage import params_file

    with params_file(params_yaml) as params:
        return plan_from_params(params)


def train_trial(params_yaml: str, data_augmented: Input[Dataset], settings: dict) -> dict:
    """One trial: short training, scored by val precision at the target recall."""
    import tempfile

    from defectops.components.tune.step import trial_from_params
    from defectops.pipelines.engines.stage import params_file

    with params_file(params_yaml) as params, tempfile.TemporaryDirectory() as scratch:
        return trial_from_params(params, data_augmented.path, scratch, settings)


def train_select(results: list[dict]) -> dict:
    """The best trial's settings; they override the train section for the final training."""
    from defectops.components.tune.step import select_best

    return select_best(results)


HELPER_FUNCTIONS = (train_plan, train_trial, train_select)


# --- container components (clusters): generated from the DAG ---------------------------------

def _container_component(stage: Stage, image: str):
    """A container component whose interface is read off the stage's declaration."""
    P = inspect.Parameter
    names = ["params_yaml", *stage.inputs, *(["settings"] if stage.tunable else []), *stage.outputs,
             *(name for name, _, _ in stage.emits)]
    annotations = {"params_yaml": str, "settings": dict,
                   **{n: Input[artifact_type(p)] for n, p in stage.inputs.items()},
                   **{n: Output[artifact_type(p)] for n, p in stage.outputs.items()},
                   **{name: dsl.OutputPath(bool) for name, _, _ in stage.emits}}

    def spec(*args):
        values = dict(zip(names, args))
        cli = ["--params-text", values["params_yaml"]]
        for name, path in {**stage.inputs, **stage.outputs}.items():
            cli += ["--path", dsl.ConcatPlaceholder([f"{path}=", values[name].path])]
        if stage.tunable:
            cli += ["--overrides-json", values["settings"]]
        for name, _, _ in stage.emits:
            cli += ["--emit", dsl.ConcatPlaceholder([f"{name}=", values[name]])]
        return dsl.ContainerSpec(image=image, command=["defectops", "pipeline", "stage", stage.name], args=cli)

    spec.__name__ = stage.name
    spec.__doc__ = f"defectops {stage.name}: `{stage.command}` with engine paths."
    spec.__signature__ = inspect.Signature([P(n, P.POSITIONAL_OR_KEYWORD, annotation=annotations[n]) for n in names])
    return dsl.container_component(spec)


def components(flavour: str, image: str = DEFAULT_IMAGE) -> tuple[dict, tuple]:
    """(stage components, fan-out helpers) for `cluster` or `local`."""
    if flavour == "local":
        # kfp.local's subprocess runner ignores the image; it runs this interpreter.
        return ({s.name: dsl.component(local_function(s), base_image=LOCAL_BASE_IMAGE) for s in TRAINING_DAG},
                tuple(dsl.component(f, base_image=LOCAL_BASE_IMAGE) for f in HELPER_FUNCTIONS))
    if flavour == "cluster":
        return ({s.name: _container_component(s, image) for s in TRAINING_DAG},
                tuple(dsl.component(f, base_image=image, install_kfp_package=False) for f in HELPER_FUNCTIONS))
    raise ValueError(f"flavour '{flavour}': expected 'cluster' or 'local'")


def _on_gpu_spot(task) -> None:
    """Training runs on the tainted spot GPU pool, resumes from the checkpoint PVC when retried."""
    from kfp import kubernetes

    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    kubernetes.add_toleration(task, key=GPU_TAINT, operator="Exists", effect="NoSchedule")
    kubernetes.mount_pvc(task, pvc_name=CHECKPOINT_PVC, mount_path=CHECKPOINT_MOUNT)
    task.set_env_variable("DEFECTOPS_CHECKPOINT_DIR", CHECKPOINT_MOUNT)
    task.set_retry(num_retries=3, backoff_duration="60s")


class KfpSettings(StepConfig):
    """The `kfp` section of params.yaml."""

    image: str = DEFAULT_IMAGE
    mlflow_tracking_uri: str | None = Field("http://mlflow.defectops.svc.cluster.local:5000",
                                            description="Tracking server every pod shares (steps read each other's "
                                                        "runs); None leaves the pod's environment alone.")
    max_parallel_trials: int = Field(4, ge=1)
    host: str | None = Field(None, description="KFP API endpoint for submit/schedule.")
    experiment: str = "defectops"


def build_pipeline(flavour: str = "cluster", image: str = DEFAULT_IMAGE, params_yaml: str = "",
                   max_parallel_trials: int = 4, mlflow_tracking_uri: str | None = None):
    """The KFP pipeline for the DAG; `params_yaml` (the whole params.yaml) is its one parameter."""
    stage_components, (plan_c, trial_c, select_c) = components(flavour, image)
    cluster = flavour == "cluster"

    @dsl.pipeline(name=PIPELINE_NAME, description="defectops training DAG: ingest -> validate -> augment -> "
                  "train (HPO fan-out) -> evaluate -> gate -> register (pending approval).")
    def training(params_yaml: str = params_yaml):
        produced, emitted = {}, {}
        for stage in TRAINING_DAG:
            kwargs = {"params_yaml": params_yaml, **{n: produced[p] for n, p in stage.inputs.items()}}
            if stage.tunable:
                plan = plan_c(params_yaml=params_yaml).set_display_name(f"{stage.name}-plan")
                with dsl.ParallelFor(plan.output, parallelism=max_parallel_trials) as settings:
                    trial = trial_c(params_yaml=params_yaml, settings=settings,
                                    **{n: produced[p] for n, p in stage.inputs.items()})
                    trial.set_display_name(f"{stage.name}-trial")
                    if cluster:
                        _on_gpu_spot(trial)
                        if mlflow_tracking_uri:
                            trial.set_env_variable("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
                kwargs["settings"] = select_c(results=dsl.Collected(trial.output)).set_display_name(
                    f"{stage.name}-select").output
            if stage.when:
                with dsl.If(emitted[stage.when] == True, name=f"{stage.when}"):  # noqa: E712 - KFP condition
                    task = stage_components[stage.name](**kwargs)
            else:
                task = stage_components[stage.name](**kwargs)
            task.set_display_name(stage.name)
            if cluster and mlflow_tracking_uri:
                task.set_env_variable("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
            # Registering has a side effect outside the pipeline: never served from cache.
            task.set_caching_options(enable_caching=not stage.when)
            if cluster and stage.tunable:
                _on_gpu_spot(task)
            produced.update({p: task.outputs[n] for n, p in stage.outputs.items()})
            emitted.update({name: task.outputs[name if cluster else "Output"] for name, _, _ in stage.emits})

    return training


def compile_pipeline(out: Path, params_yaml: str, settings: KfpSettings, image: str | None = None,
                     flavour: str = "cluster") -> Path:
    pipeline = build_pipeline(flavour, image or settings.image, params_yaml, settings.max_parallel_trials,
                              settings.mlflow_tracking_uri)
    compiler.Compiler().compile(pipeline, package_path=str(out))
    return Path(out)


def load_compiled(path: Path) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) from a compiled KFP YAML (two documents when kfp-kubernetes is used)."""
    import yaml

    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    return docs[0], (docs[1] if len(docs) > 1 else {})


def node_edges(pipeline_spec: dict) -> set[tuple[str, str]]:
    """(upstream, downstream) task pairs of a compiled pipeline, through sub-DAGs (loops, conditions).

    A task inside a loop or condition depends on what its enclosing group depends on, and on
    the group's inputs; a task that consumes a group's collected output depends on the tasks in it.
    """
    dags = {"root": pipeline_spec["root"]["dag"]}
    for name, comp in pipeline_spec.get("components", {}).items():
        if "dag" in comp:
            dags[name] = comp["dag"]

    leaves: dict[str, set[str]] = {}

    def leaf_tasks(dag_name: str) -> set[str]:
        if dag_name not in leaves:
            found = set()
            for task_name, task in dags[dag_name]["tasks"].items():
                ref = task["componentRef"]["name"]
                found |= leaf_tasks(ref) if ref in dags else {task_name}
            leaves[dag_name] = found
        return leaves[dag_name]

    edges: set[tuple[str, str]] = set()

    def walk(dag_name: str, inherited: set[str]) -> None:
        tasks = dags[dag_name]["tasks"]
        for task_name, task in tasks.items():
            upstream = set(inherited)
            for dep in task.get("dependentTasks", []):
                ref = tasks[dep]["componentRef"]["name"]
                upstream |= leaf_tasks(ref) if ref in dags else {dep}
            ref = task["componentRef"]["name"]
            if ref in dags:
                walk(ref, upstream)
            else:
                edges.update((u, task_name) for u in upstream)

    walk("root", set())
    return edges


def task_stage_names(pipeline_spec: dict) -> dict[str, str]:
    """Task name -> display name (we name helper tasks `<stage>-<role>`)."""
    names = {}
    for dag in [pipeline_spec["root"]["dag"], *(c["dag"] for c in pipeline_spec.get("components", {}).values()
                                                if "dag" in c)]:
        for task_name, task in dag["tasks"].items():
            names[task_name] = task.get("taskInfo", {}).get("name", task_name)
    return names


def run_local(params_yaml: str, pipeline_root: Path) -> dict:
    """Run the pipeline on this machine with kfp.local (lightweight components, this interpreter)."""
    from kfp import local

    pipeline_root = Path(pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    build_pipeline("local", params_yaml=params_yaml)()
    registrations = sorted(pipeline_root.glob("**/reports_register/registration.json"), key=lambda p: p.stat().st_mtime)
    evaluations = sorted(pipeline_root.glob("**/reports_evaluate/metrics.json"), key=lambda p: p.stat().st_mtime)
    return {"pipeline_root": str(pipeline_root),
            "evaluation": json.loads(evaluations[-1].read_text()) if evaluations else None,
            "registration": json.loads(registrations[-1].read_text()) if registrations else None}

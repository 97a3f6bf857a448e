"""Run a node of the compiled SageMaker pipeline definition here, as its processing job would.

The node's entrypoint and arguments are taken from the definition itself; pipeline properties
(`{"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}`) are filled in from `properties`, and
the job's folders (/opt/ml/processing/...) become folders under `root`.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from typer.testing import CliRunner

PROCESSING_ROOT = "/opt/ml/processing"


def resolve(value, properties: dict[str, str]):
    """A definition value with its pipeline properties and joins filled in."""
    if isinstance(value, dict) and "Get" in value:
        return properties[value["Get"]]
    if isinstance(value, dict) and "Std:Join" in value:
        join = value["Std:Join"]
        return join["On"].join(str(resolve(v, properties)) for v in join["Values"])
    return value


def processing_inputs(node: dict, properties: dict[str, str]) -> dict[str, str]:
    """Input name -> the S3 URI the job would download."""
    return {i["InputName"]: resolve(i["S3Input"]["S3Uri"], properties) for i in node["Arguments"]["ProcessingInputs"]}


def model_archive(folder: Path, archive: Path) -> Path:
    """A train step's output folder as SageMaker keeps a training job's model: model.tar.gz of its contents."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in Path(folder).iterdir():
            tar.add(path, arcname=path.name)
    return archive


def stage_job(root: Path, params: Path, inputs: dict[str, Path], model_archive_inputs: tuple[str, ...] = ()) -> Path:
    """Lay out a processing job's input folders: params, and each input (a model as SageMaker hands it: a tarball)."""
    job = Path(root) / "processing"
    (job / "input" / "params").mkdir(parents=True)
    shutil.copy(params, job / "input" / "params" / "params.yaml")
    for name, source in inputs.items():
        target = job / "input" / name
        if name in model_archive_inputs:
            model_archive(source, target / "model.tar.gz")
        else:
            shutil.copytree(source, target)
    return job


def run_node(node: dict, job: Path, properties: dict[str, str]):
    """`defectops ...` with the node's entrypoint, arguments and environment, in this process; returns the
    CLI result."""
    from defectops.cli import app

    spec = node["Arguments"]["AppSpecification"]
    argv = [str(resolve(a, properties)) for a in [*spec["ContainerEntrypoint"], *spec.get("ContainerArguments", [])]]
    assert argv[0] == "defectops"
    argv = [a.replace(PROCESSING_ROOT, str(job)) for a in argv[1:]]
    env = {k: str(resolve(v, properties)) for k, v in node["Arguments"].get("Environment", {}).items()}
    return CliRunner().invoke(app, argv, env=env, catch_exceptions=False)

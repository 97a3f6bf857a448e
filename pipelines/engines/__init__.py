"""Engines render and run the one declared DAG: DVC (local), Kubeflow Pipelines, SageMaker Pipelines."""

from __future__ import annotations

from pathlib import Path

from defectops.config import load_step_config, read_params
from defectops.pipelines.engines import sagemaker
from defectops.pipelines.engines.dvc import write_dvc_yaml

COMPILED = Path("pipelines/compiled")
DEFAULT_OUT = {"dvc": Path("dvc.yaml"), "kfp": COMPILED / "kfp_pipeline.yaml",
               "sagemaker": COMPILED / "sagemaker_pipeline.json"}


def compile_for(engine: str, out: Path | None, params: Path, image: str | None = None,
                flavour: str = "cluster") -> Path:
    """Write the engine's rendering of the DAG; the settings in `params` become its defaults."""
    out = Path(out or DEFAULT_OUT[engine])
    out.parent.mkdir(parents=True, exist_ok=True)
    if engine == "dvc":
        return write_dvc_yaml(out)
    import json

    # One line of JSON (which is YAML): KFP copies the default into a comment header line by line.
    params_yaml = json.dumps(read_params(params), sort_keys=True)
    if engine == "kfp":
        from defectops.pipelines.engines import kfp

        return kfp.compile_pipeline(out, params_yaml, load_step_config(kfp.KfpSettings, "kfp", params), image, flavour)
    if engine == "sagemaker":
        return sagemaker.write_definition(out, sagemaker.SageMakerSettings.from_params(params), image=image)
    raise ValueError(f"unknown engine '{engine}'")

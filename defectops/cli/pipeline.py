"""`defectops pipeline ...`: render the DAG for an engine, run it, run one stage; `defectops sagemaker ...`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from defectops.cli_support import PARAMS_OPTION, console, step_errors
from defectops.errors import DefectopsError
from defectops.pipelines.engines import compile_for
from defectops.pipelines.engines.stage import (
    StageError,
    main_env_root,
    parse_path_mappings,
    parse_settings,
    run_stage,
    run_stage_text,
    sagemaker_training,
)
from defectops.pipelines.submission import submit
from defectops.sagemaker_endpoint import deploy_model_package

app = typer.Typer(help="Render or run the training DAG on an engine.", no_args_is_help=True)
sagemaker_app = typer.Typer(help="SageMaker: deploy approved model packages.", no_args_is_help=True)


ENGINES = ("dvc", "kfp", "sagemaker")


@app.command("compile")
def pipeline_compile(
    engine: str = typer.Option("dvc", help=f"Engine to render for: {', '.join(ENGINES)}."),
    out: Path = typer.Option(None, help="Where the rendered pipeline is written (default: dvc.yaml, pipelines/"
                                        "compiled/kfp_pipeline.yaml, pipelines/compiled/sagemaker_pipeline.json)."),
    params: Path = PARAMS_OPTION,
    image: str = typer.Option(None, help="Container image for kfp/sagemaker steps (default: the engine's)."),
    flavour: str = typer.Option("cluster", help="kfp only: 'cluster' (container components) or 'local' "
                                                "(lightweight components for kfp.local)."),
) -> None:
    """Render the declared DAG for an engine (offline: no cluster or cloud account needed)."""
    if engine not in ENGINES:
        console.print(f"[red]engine '{engine}' is not one of: {', '.join(ENGINES)}[/]")
        raise typer.Exit(2)
    with step_errors("pipeline compile"):
        console.print(f"wrote {compile_for(engine, out, params, image=image, flavour=flavour)}")


@app.command("stage")
def pipeline_stage(
    name: str = typer.Argument(..., help="DAG stage to run."),
    path: list[str] = typer.Option([], "--path", help="DECLARED=ACTUAL: run with ACTUAL where the DAG says DECLARED "
                                                      "(repeatable)."),
    params: Path = typer.Option(None, help="Settings file."),
    params_text: str = typer.Option(None, help="Settings as YAML text (how KFP passes its pipeline parameter)."),
    overrides_json: str = typer.Option(None, help="Tuned settings for a tunable stage, as a JSON object."),
    setting: list[str] = typer.Option([], "--set", help="SECTION.KEY=VALUE: a setting only the engine knows at run "
                                                        "time, e.g. register.model_uri=s3://... (repeatable)."),
    emit: list[str] = typer.Option([], "--emit", help="NAME=FILE: write an emitted value (e.g. gate_passed) to FILE "
                                                      "(repeatable)."),
) -> None:
    """Run one DAG stage at engine-chosen paths: the entry point of every container step."""

    with step_errors(f"pipeline stage {name}"):
        if (params is None) == (params_text is None):
            raise StageError("give exactly one of --params FILE or --params-text YAML")
        try:
            overrides = json.loads(overrides_json) if overrides_json else None
        except json.JSONDecodeError as exc:
            raise StageError(f"--overrides-json is not JSON: {exc}") from None
        targets = {}
        for item in emit:
            key, sep, file = item.partition("=")
            if not sep:
                raise StageError(f"--emit '{item}': expected NAME=FILE")
            targets[key] = Path(file)
        mappings, settings = parse_path_mappings(path), parse_settings(setting)
        values = (run_stage(name, params, mappings, overrides, settings) if params is not None
                  else run_stage_text(name, params_text, mappings, overrides, settings))
        for key, file in targets.items():
            if key not in values:
                raise StageError(f"stage '{name}' emits {sorted(values)}; not '{key}'")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values[key]))


@app.command("sagemaker-training")
def pipeline_sagemaker_training(
    action: str = typer.Argument("train", help="SageMaker starts training images with 'train'."),
) -> None:
    """Entry of the training image on SageMaker (final training or one tuning trial)."""
    if action != "train":
        console.print(f"[red]unknown action '{action}'; SageMaker training images are started with 'train'[/]")
        raise typer.Exit(2)
    with step_errors("sagemaker-training"):
        sagemaker_training(main_env_root())


@app.command("run")
def pipeline_run(
    engine: str = typer.Option("local", help="local (dvc repro here), kfp (kfp.host, else kfp.local here) or "
                                             "sagemaker (upload settings, upsert, start)."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage even if nothing changed (retraining)."),
    trigger: str = typer.Option("manual", help="Why this run happens: manual, schedule or drift; tagged on the "
                                              "registered version."),
    trigger_ref: str = typer.Option("", help="Where the trigger came from (e.g. the drift verdict file)."),
    overrides_json: str = typer.Option("", help="Settings for this run only, as JSON sections "
                                                "(e.g. '{\"train\": {\"epochs\": 5}}'); remote engines only: a local "
                                                "run writes what it ran into params.yaml."),
) -> None:
    """Run the training DAG on an engine (through `defectops.submit`) and print what happened."""
    with step_errors(f"pipeline run --engine {engine}"):
        overrides = _json_mapping(overrides_json, "--overrides-json") if overrides_json else None
        submission = submit(engine, params=overrides, trigger=trigger, trigger_ref=trigger_ref, force=force,
                            echo=print)
    stages = submission.details.get("stages")
    if stages:
        table = Table("stage", "status", "wall time (s)")
        for run in stages:
            table.add_row(run["name"], run["status"], f"{run['seconds']:.1f}")
        console.print(table)
    typer.echo(json.dumps(submission.summary(), indent=2))


def _json_mapping(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefectopsError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DefectopsError(f"{option}: expected a JSON object of params sections, got {type(value).__name__}")
    return value


@sagemaker_app.command("deploy-endpoint")
def sagemaker_deploy_endpoint(
    model_package_arn: str = typer.Option(..., help="ARN of an Approved model package."),
    endpoint: str = typer.Option(..., help="Endpoint name; created, or updated in place if it exists."),
    role_arn: str = typer.Option(..., help="SageMaker execution role for the model."),
    instance_type: str = typer.Option("ml.c5.xlarge"),
    instance_count: int = typer.Option(1, min=1),
) -> None:
    """Deploy an approved SageMaker model package to a real-time endpoint."""
    import boto3

    with step_errors("sagemaker deploy-endpoint"):
        result = deploy_model_package(boto3.client("sagemaker"), endpoint, model_package_arn, role_arn,
                                      instance_type, instance_count)
    typer.echo(json.dumps(result, indent=2))

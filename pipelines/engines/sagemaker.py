"""The SageMaker Pipelines engine: the declared DAG as a pipeline definition (SDK v3).

Stage by stage: processing jobs run `defectops pipeline stage NAME` in the defectops image; the
tunable stage becomes a TuningStep (managed-spot trial jobs, ranges from `tune.space`) feeding
its best settings to a managed-spot TrainingStep that checkpoints to S3 (an interrupted job
resumes); the gated stage is a ConditionStep on the evaluation report (PropertyFile) around the
same register stage, told the S3 locations of the model and its evaluation: with
`registry.backend: sagemaker` it creates the PendingManualApproval package with the evaluation
folder as its ModelMetrics (what the review page shows) and the tags every backend gets.

The definition is built offline: no credentials, no AWS call (the SDK's session gets its
bucket handed to it, role validation is off). `upsert`/`start` use boto3.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from pydantic import Field

from defectops.config import StepConfig, read_params
from defectops.pipelines.dag import TRAINING_DAG, Stage, artifact_name

PROCESSING_ROOT = "/opt/ml/processing"
OBJECTIVE_METRIC = "defectops_objective"


class SageMakerSettings(StepConfig):
    """The `sagemaker` section of params.yaml (plus the tune and register sections it reads)."""

    pipeline_name: str = "defectops-training"
    region: str = "eu-west-1"
    role_arn: str = Field("arn:aws:iam::123456789012:role/defectops-sagemaker-execution",
                          description="Execution role for every job (infra/terraform creates it).")
    bucket: str = "defectops-artifacts"
    prefix: str = "defectops"
    image: str = Field("123456789012.dkr.ecr.eu-west-1.amazonaws.com/defectops:0.1.0",
                       description="Slim image: processing steps.")
    train_image: str = Field("123456789012.dkr.ecr.eu-west-1.amazonaws.com/defectops-train:0.1.0",
                             description="GPU image: tuning trials and training.")
    processing_instance_type: str = "ml.m5.xlarge"
    training_instance_type: str = "ml.g5.xlarge"
    spot: bool = True
    max_run_seconds: int = Field(4 * 3600, ge=60)
    max_wait_seconds: int = Field(8 * 3600, ge=60, description="Spot: total time incl. waiting for capacity.")
    max_parallel_trials: int = Field(2, ge=1)
    kms_key_id: str | None = None
    mlflow_tracking_uri: str | None = Field(None, description="Tracking server every job shares (e.g. SageMaker "
                                                              "managed MLflow); steps read each other's runs.")
    # Read from the other sections so they are said once.
    trials: int = 4
    search_space: dict = {}
    model_package_group: str = "defectops-detector"

    @classmethod
    def from_params(cls, params: Path) -> SageMakerSettings:
        from defectops.components.tune.step import TuneConfig
        from defectops.config import load_step_config

        raw = read_params(params)
        tune = load_step_config(TuneConfig, "tune", params)
        return load_step_config(cls, "sagemaker", params, overrides={
            "trials": tune.trials, "search_space": {k: v.model_dump() for k, v in tune.space.items()},
            "model_package_group": (raw.get("register") or {}).get("model_name", "defectops-detector")})

    @property
    def params_s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/params/params.yaml"


@contextmanager
def _offline_session(settings: SageMakerSettings):
    """A PipelineSession that needs no credentials and never calls AWS while building the definition."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    saved = {k: os.environ.get(k) for k in ("SAGEMAKER_VALIDATE_ROLE", "AWS_DEFAULT_REGION")}
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    os.environ.setdefault("AWS_DEFAULT_REGION", settings.region)  # some SDK modules make clients at import
    try:
        credentials = {} if boto3.Session().get_credentials() else {"aws_access_key_id": "offline",
                                                                       "aws_secret_access_key": "offline"}
        session = PipelineSession(boto_session=boto3.Session(region_name=settings.region, **credentials),
                                  default_bucket=settings.bucket)
        session._default_bucket = settings.bucket  # known: skip the SDK's "create bucket if missing" call
        yield session
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ranges(space: dict) -> dict:
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    ranges = {}
    for name, r in space.items():
        if r["type"] == "categorical":
            ranges[name] = CategoricalParameter([str(c) for c in r["choices"]])
        elif r["type"] == "int":
            ranges[name] = IntegerParameter(int(r["low"]), int(r["high"]),
                                            scaling_type="Logarithmic" if r["log"] else "Linear")
        else:
            ranges[name] = ContinuousParameter(r["low"], r["high"],
                                               scaling_type="Logarithmic" if r["log"] else "Linear")
    return ranges


def build_pipeline(settings: SageMakerSettings, session, image: str | None = None):
    """The SDK Pipeline object for the DAG, on a session from `_offline_session`."""
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
    )
    from sagemaker.core.training.configs import CheckpointConfig, Compute, InputData, StoppingCondition
    from sagemaker.core.workflow.conditions import ConditionEquals
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep, TuningStep
    from sagemaker.train.model_trainer import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner

    image = image or settings.image
    params_uri = ParameterString(name="ParamsS3Uri", default_value=settings.params_s3_uri)
    trigger = ParameterString(name="Trigger", default_value="manual")
    run_prefix = [f"s3://{settings.bucket}", settings.prefix, "runs", ExecutionVariables.PIPELINE_EXECUTION_ID]

    env = {"DEFECTOPS_TRIGGER": trigger,
           **({"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri} if settings.mlflow_tracking_uri else {})}
    produced: dict[str, object] = {}  # declared path -> S3 URI (a pipeline property)
    steps: list = []
    report_files: dict[str, PropertyFile] = {}

    def processing_step(stage: Stage, arguments: list | None = None) -> ProcessingStep:
        inputs = [ProcessingInput(input_name="params", s3_input=ProcessingS3Input(
            s3_uri=params_uri, local_path=f"{PROCESSING_ROOT}/input/params", s3_data_type="S3Prefix",
            s3_input_mode="File"))]
        mappings = []
        for name, path in stage.inputs.items():
            local = f"{PROCESSING_ROOT}/input/{name}"
            inputs.append(ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
                s3_uri=produced[path], local_path=local, s3_data_type="S3Prefix", s3_input_mode="File")))
            mappings += ["--path", f"{path}={local}"]
        outputs = []
        for name, path in stage.outputs.items():
            local = f"{PROCESSING_ROOT}/output/{name}"
            outputs.append(ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
                s3_uri=Join(on="/", values=[*run_prefix, name]), local_path=local, s3_upload_mode="EndOfJob")))
            mappings += ["--path", f"{path}={local}"]
        processor = Processor(role=settings.role_arn, image_uri=image, instance_count=1,
                              instance_type=settings.processing_instance_type, sagemaker_session=session,
                              entrypoint=["defectops", "pipeline", "stage", stage.name, "--params",
                                          f"{PROCESSING_ROOT}/input/params/params.yaml", *mappings],
                              env=env, base_job_name=f"defectops-{stage.name}",
                              output_kms_key=settings.kms_key_id)
        files = []
        for emitted, report, _ in stage.emits:
            out = next(o for o in stage.outs if report.startswith(o + "/"))
            report_files[emitted] = PropertyFile(name=f"{stage.name.capitalize()}Report",
                                                 output_name=artifact_name(out), path=report[len(out) + 1:])
            files.append(report_files[emitted])
        step = ProcessingStep(name=stage.name, step_args=processor.run(inputs=inputs, outputs=outputs,
                                                                        arguments=arguments),
                              property_files=files or None)
        for name, path in stage.outputs.items():
            produced[path] = step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri
        return step

    def trainer(hyperparameters: dict) -> ModelTrainer:
        return ModelTrainer(
            training_image=settings.train_image, role=settings.role_arn, sagemaker_session=session,
            base_job_name="defectops-train",
            compute=Compute(instance_type=settings.training_instance_type, instance_count=1, volume_size_in_gb=50,
                            enable_managed_spot_training=settings.spot),
            stopping_condition=StoppingCondition(max_runtime_in_seconds=settings.max_run_seconds,
                                                 max_wait_time_in_seconds=settings.max_wait_seconds
                                                 if settings.spot else None),
            # Spot: SageMaker syncs this folder to S3 and restores it into a restarted job.
            checkpoint_config=CheckpointConfig(s3_uri=f"s3://{settings.bucket}/{settings.prefix}/checkpoints",
                                               local_path="/opt/ml/checkpoints"),
            environment=env, hyperparameters=hyperparameters)

    def training_steps(stage: Stage) -> list:
        channels = [InputData(channel_name="params", data_source=params_uri),
                    *(InputData(channel_name=name, data_source=produced[path]) for name, path in stage.inputs.items())]
        tuner = HyperparameterTuner(
            model_trainer=trainer({"mode": "trial"}), objective_metric_name=OBJECTIVE_METRIC,
            metric_definitions=[{"Name": OBJECTIVE_METRIC, "Regex": f"{OBJECTIVE_METRIC}=([0-9.eE+-]+)"}],
            hyperparameter_ranges=_ranges(settings.search_space), strategy="Bayesian", objective_type="Maximize",
            max_jobs=settings.trials, max_parallel_jobs=settings.max_parallel_trials, early_stopping_type="Auto",
            base_tuning_job_name="defectops-tune")
        tune_step = TuningStep(name=f"{stage.name}-tune", step_args=tuner.tune(inputs=channels))
        best = tune_step.properties.BestTrainingJob.TunedHyperParameters
        final = trainer({"mode": "final", **{k: best[k] for k in settings.search_space}})
        train_step = TrainingStep(name=stage.name, step_args=final.train(input_data_config=channels))
        for path in stage.outs:
            produced[path] = train_step.properties.ModelArtifacts.S3ModelArtifacts
        return [tune_step, train_step]

    def gated_registration(stage: Stage) -> ConditionStep:
        """The register stage like any other (the stage adapter calling `defectops register`), told where the
        model and its evaluation live in S3 and which registry holds SageMaker's packages, behind the gate."""
        settings_args = []
        for key, value in (("register.model_uri", produced["models/train"]),
                           ("register.evaluation_uri", produced["reports/evaluate"])):
            settings_args += ["--set", Join(on="", values=[f"{key}=", value])]
        register_step = processing_step(stage, settings_args)
        file = report_files[stage.when]
        _, report, key = next(e for s in TRAINING_DAG for e in s.emits if e[0] == stage.when)
        producer = next(s.name for s in TRAINING_DAG if any(e[0] == stage.when for e in s.emits))
        passed = ConditionEquals(left=JsonGet(step_name=producer, property_file=file, json_path=key), right=True)
        return ConditionStep(name=f"{stage.name}-gate", conditions=[passed], if_steps=[register_step], else_steps=[])

    for stage in TRAINING_DAG:
        if stage.tunable:
            steps += training_steps(stage)
        elif stage.when:
            steps.append(gated_registration(stage))
        else:
            steps.append(processing_step(stage))
    return Pipeline(name=settings.pipeline_name, parameters=[params_uri, trigger],
                    steps=steps, sagemaker_session=session)



def definition(settings: SageMakerSettings, image: str | None = None) -> dict:
    """The pipeline definition JSON as a dict, built offline."""
    import logging

    logging.getLogger("sagemaker").setLevel(logging.ERROR)
    with _offline_session(settings) as session:
        return json.loads(build_pipeline(settings, session, image).definition())


def write_definition(out: Path, settings: SageMakerSettings, image: str | None = None) -> Path:
    Path(out).write_text(json.dumps(definition(settings, image), indent=2, sort_keys=False) + "\n")
    return Path(out)


def _all_steps(steps: list[dict], parent: str | None = None):
    for step in steps:
        yield step, parent
        args = step.get("Arguments", {})
        for branch in ("IfSteps", "ElseSteps"):
            yield from _all_steps(args.get(branch, []), step["Name"])


_REFERENCE = re.compile(r"Steps\.([A-Za-z0-9_-]+)[.\[]")


def node_edges(defn: dict) -> set[tuple[str, str]]:
    """(upstream, downstream) step pairs: property references, DependsOn, and condition branches."""
    edges = set()
    for step, parent in _all_steps(defn["Steps"]):
        body = json.dumps({k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")})
        upstream = set(_REFERENCE.findall(body)) | set(step.get("DependsOn", []))
        if parent:
            upstream.add(parent)
        edges |= {(u, step["Name"]) for u in upstream if u != step["Name"]}
    return edges


def steps_by_name(defn: dict) -> dict[str, dict]:
    return {step["Name"]: step for step, _ in _all_steps(defn["Steps"])}


def upload_params(params: Path, settings: SageMakerSettings, s3_client=None, key_suffix: str = "params.yaml") -> str:
    """Put the settings where the pipeline reads them; returns their S3 URI."""
    import boto3

    s3 = s3_client or boto3.client("s3", region_name=settings.region)
    key = f"{settings.prefix}/params/{key_suffix}"
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id} if settings.kms_key_id else {}
    s3.put_object(Bucket=settings.bucket, Key=key, Body=Path(params).read_bytes(), **extra)
    return f"s3://{settings.bucket}/{key}"


def upsert(defn: dict, settings: SageMakerSettings, sagemaker_client=None) -> str:
    """Create or update the pipeline; returns its ARN."""
    import boto3
    from botocore.exceptions import ClientError

    sm = sagemaker_client or boto3.client("sagemaker", region_name=settings.region)
    body = json.dumps(defn)
    try:
        return sm.create_pipeline(PipelineName=settings.pipeline_name, PipelineDefinition=body,
                                  RoleArn=settings.role_arn, PipelineDescription="defectops DAG")["PipelineArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ResourceInUse", "ValidationException", "ConflictException"):
            raise
        return sm.update_pipeline(PipelineName=settings.pipeline_name, PipelineDefinition=body,
                                  RoleArn=settings.role_arn)["PipelineArn"]


def start(settings: SageMakerSettings, parameters: dict[str, str] | None = None, sagemaker_client=None,
          display_name: str | None = None) -> str:
    """Start an execution; returns its ARN."""
    import boto3

    sm = sagemaker_client or boto3.client("sagemaker", region_name=settings.region)
    kwargs = {"PipelineName": settings.pipeline_name,
              "PipelineParameters": [{"Name": k, "Value": str(v)} for k, v in (parameters or {}).items()]}
    if display_name:
        kwargs["PipelineExecutionDisplayName"] = display_name
    return sm.start_pipeline_execution(**kwargs)["PipelineExecutionArn"]


def execution_running(execution_arn: str, sagemaker_client=None) -> bool:
    """Whether a started execution is still going (a drift retraining waits for it before starting another)."""
    import boto3

    sm = sagemaker_client or boto3.client("sagemaker")
    status = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)["PipelineExecutionStatus"]
    return status in ("Executing", "Stopping")

"""One DAG, three engines: the DVC, Kubeflow and SageMaker renderings have the same steps and edges."""

import inspect
import json
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from defectops.components.tune.step import TuneConfig
from defectops.config import load_step_config
from defectops.pipelines.dag import STAGES, TRAINING_DAG, Stage, collapse, edges
from defectops.pipelines.engines import compile_for, kfp, sagemaker
from defectops.pipelines.engines.dvc import render

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def _dvc_edges(dvc_yaml: dict) -> set[tuple[str, str]]:
    """Edges read off dvc.yaml itself: a stage depends on the stage whose outs it lists in deps."""
    stages = dvc_yaml["stages"]
    producer = {out: name for name, spec in stages.items() for out in spec.get("outs", [])}
    return {(producer[d], name) for name, spec in stages.items() for d in spec.get("deps", []) if d in producer}


@pytest.fixture(scope="module")
def kfp_cluster(tmp_path_factory):
    out = compile_for("kfp", tmp_path_factory.mktemp("kfp") / "pipeline.yaml", PARAMS)
    return kfp.load_compiled(out)


@pytest.fixture(scope="module")
def kfp_local_spec(tmp_path_factory):
    out = compile_for("kfp", tmp_path_factory.mktemp("kfp") / "local.yaml", PARAMS, flavour="local")
    return kfp.load_compiled(out)[0]


@pytest.fixture(scope="module")
def sm_definition(tmp_path_factory):
    return json.loads(compile_for("sagemaker", tmp_path_factory.mktemp("sm") / "pipeline.json", PARAMS).read_text())


def _kfp_stage_edges(spec: dict) -> set[tuple[str, str]]:
    names = kfp.task_stage_names(spec)
    return collapse({(names[a], names[b]) for a, b in kfp.node_edges(spec)})


def test_dvc_kfp_and_sagemaker_have_the_dags_steps_and_edges(kfp_cluster, kfp_local_spec, sm_definition):
    declared = edges()
    assert declared == {("ingest", "validate"), ("validate", "augment"), ("augment", "train"),
                        ("train", "evaluate"), ("validate", "evaluate"), ("train", "register"),
                        ("evaluate", "register")}
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert committed == render()
    assert _dvc_edges(committed) == declared
    assert _kfp_stage_edges(kfp_cluster[0]) == declared
    assert _kfp_stage_edges(kfp_local_spec) == declared
    assert collapse(sagemaker.node_edges(sm_definition)) == declared
    sm_stages = {name.split("-")[0] for name in sagemaker.steps_by_name(sm_definition)}
    names = kfp.task_stage_names(kfp_cluster[0])
    kfp_stages = {names[task].split("-")[0] for edge in kfp.node_edges(kfp_cluster[0]) for task in edge}
    assert sm_stages == kfp_stages == set(committed["stages"]) == set(STAGES)


def _component_artifacts(spec: dict, component: str) -> tuple[set[str], set[str]]:
    definition = spec["components"][component]
    return (set(definition.get("inputDefinitions", {}).get("artifacts", {})),
            set(definition.get("outputDefinitions", {}).get("artifacts", {})))


def test_both_kfp_flavours_read_each_stages_artifacts_off_the_dag(kfp_cluster, kfp_local_spec):
    """The local (kfp.local) and cluster components are generated from one declaration: same artifacts."""
    for stage in TRAINING_DAG:
        expected = (set(stage.inputs), set(stage.outputs))
        assert _component_artifacts(kfp_cluster[0], f"comp-{stage.name}") == expected, stage.name
        assert _component_artifacts(kfp_local_spec, f"comp-{stage.name}") == expected, stage.name


def test_a_new_stage_gets_its_local_component_from_its_declaration():
    from kfp import dsl

    stage = Stage("inspect", ("--model", "models/train", "--out", "reports/inspect"), deps=("models/train",),
                  outs=("reports/inspect",), emits=(("looks_fine", "reports/inspect/verdict.json", "ok"),))
    function = kfp.local_function(stage)
    assert list(inspect.signature(function).parameters) == ["params_yaml", "models_train", "reports_inspect"]
    assert inspect.signature(function).return_annotation is bool
    assert "run_stage_text('inspect', params_yaml, {'models/train': models_train.path, 'reports/inspect': " \
           "reports_inspect.path})['looks_fine']" in inspect.getsource(function)  # what KFP ships
    spec = dsl.component(function, base_image=kfp.LOCAL_BASE_IMAGE).component_spec
    assert set(spec.inputs) == {"params_yaml", "models_train"} and set(spec.outputs) == {"reports_inspect", "Output"}
    twice = Stage("x", (), emits=(("a", "r.json", "a"), ("b", "r.json", "b")))
    with pytest.raises(ValueError, match="single return value"):
        kfp.local_function(twice)


@pytest.mark.e2e
def test_committed_renderings_are_current(tmp_path):
    """pipelines/compiled/ is what a reviewer reads and CD deploys: it must match the DAG and params.yaml."""
    for engine, name in (("kfp", "kfp_pipeline.yaml"), ("sagemaker", "sagemaker_pipeline.json")):
        fresh = compile_for(engine, tmp_path / name, PARAMS).read_text()
        assert fresh == (REPO / "pipelines" / "compiled" / name).read_text(), (
            f"pipelines/compiled/{name} is stale: run 'defectops pipeline compile --engine {engine}'")


def test_kfp_cluster_pipeline_uses_the_step_cli_fans_out_trials_and_gates_registration(kfp_cluster):
    spec, platform = kfp_cluster
    executors = spec["deploymentSpec"]["executors"]
    for stage in TRAINING_DAG:
        container = executors[f"exec-{stage.name}"]["container"]
        assert container["image"] == kfp.DEFAULT_IMAGE
        assert container["command"] == ["defectops", "pipeline", "stage", stage.name]
        declared = [a for a in container["args"] if "=" in a and "{{" in a]
        assert len(declared) == len(stage.deps) + len(stage.outs) + len(stage.emits)
    components = spec["components"]
    root_tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for t in root_tasks.values() if "parameterIterator" in t)  # dsl.ParallelFor over the plan
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("train-plan-Output")
    assert loop["iteratorPolicy"]["parallelismLimit"] == kfp.KfpSettings().max_parallel_trials
    assert "train-trial" in components[loop["componentRef"]["name"]]["dag"]["tasks"]
    select_inputs = components["comp-train-select"]["inputDefinitions"]["parameters"]["results"]
    assert select_inputs["parameterType"] == "LIST"  # dsl.Collected over the trials
    condition = next(t for t in root_tasks.values() if "triggerPolicy" in t)
    assert "gate_passed" in condition["triggerPolicy"]["condition"]
    register = next(t for c in components.values() if "dag" in c for n, t in c["dag"]["tasks"].items()
                    if n == "register")
    assert register["cachingOptions"] == {}  # a registry side effect is never served from cache
    assert root_tasks["train"]["cachingOptions"]["enableCache"] is True
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("exec-train", "exec-train-trial"):
        assert k8s[executor]["nodeSelector"]["labels"] == {kfp.GPU_NODE_LABEL[0]: kfp.GPU_NODE_LABEL[1]}
        assert k8s[executor]["tolerations"][0]["key"] == kfp.GPU_TAINT
        assert k8s[executor]["pvcMount"][0]["mountPath"] == kfp.CHECKPOINT_MOUNT
    train_resources = executors["exec-train"]["container"]["resources"]
    assert train_resources["accelerator"]["resourceCount"] == "1"
    assert {"name": "DEFECTOPS_CHECKPOINT_DIR", "value": kfp.CHECKPOINT_MOUNT} in executors["exec-train"][
        "container"]["env"]


def test_sagemaker_definition_has_spot_training_tuning_gate_and_pending_registration(sm_definition):
    steps = sagemaker.steps_by_name(sm_definition)
    assert {s["Type"] for s in steps.values()} == {"Processing", "Tuning", "Training", "Condition"}
    train = steps["train"]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    assert train["CheckpointConfig"]["S3Uri"].startswith("s3://") and train["CheckpointConfig"]["LocalPath"]
    assert train["StoppingCondition"]["MaxWaitTimeInSeconds"] >= train["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert train["HyperParameters"]["lr0"] == {"Get": "Steps.train-tune.BestTrainingJob.TunedHyperParameters['lr0']"}

    tuning = steps["train-tune"]["Arguments"]
    config = tuning["HyperParameterTuningJobConfig"]
    space = load_step_config(TuneConfig, "tune", PARAMS).space
    ranges = {r["Name"]: r for r in config["ParameterRanges"]["ContinuousParameterRanges"]}
    assert set(ranges) == set(space)
    for name, r in space.items():
        assert float(ranges[name]["MinValue"]) == r.low and float(ranges[name]["MaxValue"]) == r.high
        assert ranges[name]["ScalingType"] == ("Logarithmic" if r.log else "Linear")
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == load_step_config(TuneConfig, "tune", PARAMS).trials
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "defectops_objective"}
    assert tuning["TrainingJobDefinition"]["EnableManagedSpotTraining"] is True
    assert tuning["TrainingJobDefinition"]["StaticHyperParameters"]["mode"] == "trial"

    evaluate = steps["evaluate"]
    assert evaluate["PropertyFiles"][0]["FilePath"] == "metrics.json"
    assert evaluate["Arguments"]["AppSpecification"]["ContainerEntrypoint"][:4] == [
        "defectops", "pipeline", "stage", "evaluate"]
    gate = steps["register-gate"]["Arguments"]
    assert gate["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"] == "gate.passed"
    assert gate["Conditions"][0]["RightValue"] is True
    assert [s["Name"] for s in gate["IfSteps"]] == ["register"]
    # The register node is the stage adapter calling `defectops register`, told where the jobs left the model
    # and its evaluation (tests/ui/test_review_sagemaker.py runs this very node against moto).
    register = steps["register"]["Arguments"]["AppSpecification"]
    assert register["ContainerEntrypoint"][:4] == ["defectops", "pipeline", "stage", "register"]
    settings = [a["Std:Join"]["Values"] for a in register["ContainerArguments"] if isinstance(a, dict)]
    assert settings == [["register.model_uri=", {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}],
                        ["register.evaluation_uri=", {"Get": "Steps.evaluate.ProcessingOutputConfig.Outputs"
                                                             "['reports_evaluate'].S3Output.S3Uri"}]]
    parameters = {p["Name"]: p.get("DefaultValue") for p in sm_definition["Parameters"]}
    assert parameters == {"ParamsS3Uri": sagemaker.SageMakerSettings.from_params(PARAMS).params_s3_uri,
                          "Trigger": "manual"}  # the drift trigger starts executions with Trigger=drift


@pytest.mark.e2e
def test_sagemaker_definition_is_built_without_any_network_or_credentials(monkeypatch, tmp_path):
    attempts = []
    real_connect = socket.socket.connect

    def guarded(sock, address):
        if not (isinstance(address, tuple) and str(address[0]).startswith(("127.", "::1", "localhost"))):
            attempts.append(address)
            raise OSError("network disabled in this test")
        return real_connect(sock, address)

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(socket.socket, "connect", guarded)
    definition = sagemaker.definition(sagemaker.SageMakerSettings.from_params(PARAMS))
    assert len(definition["Steps"]) == 7 and attempts == []


@pytest.mark.e2e
def test_sagemaker_upsert_and_start_through_boto3(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = sagemaker.SageMakerSettings.from_params(PARAMS)
    with mock_aws():
        sm, s3 = boto3.client("sagemaker", region_name="eu-west-1"), boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        definition = sagemaker.definition(settings)
        arn = sagemaker.upsert(definition, settings, sm)
        assert sagemaker.upsert(definition, settings, sm) == arn  # second time: an update, same pipeline
        stored = json.loads(sm.describe_pipeline(PipelineName=settings.pipeline_name)["PipelineDefinition"])
        assert stored == definition
        uri = sagemaker.upload_params(PARAMS, settings, s3)
        execution = sagemaker.start(settings, {"ParamsS3Uri": uri, "Trigger": "schedule"}, sm)
        described = sm.describe_pipeline_execution(PipelineExecutionArn=execution)
        assert described["PipelineArn"] == arn
        body = s3.get_object(Bucket=settings.bucket, Key=f"{settings.prefix}/params/params.yaml")["Body"].read()
        assert body == PARAMS.read_bytes()


def test_sagemaker_settings_errors_name_the_field(tmp_path):
    params = yaml.safe_load(PARAMS.read_text())
    params["sagemaker"]["max_wait_seconds"] = "soon"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "pipeline", "compile", "--engine", "sagemaker",
                             "--params", str(bad), "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "sagemaker.max_wait_seconds" in result.stderr


@pytest.mark.e2e
def test_a_cloud_run_carries_the_gates_learned_profile_inside_its_settings(tmp_path, monkeypatch):
    """A SageMaker step runs in a container without data/gate/: the submission sends the profile inline."""
    from defectops.components.validate import profile as gate_profile
    from defectops.components.validate.step import ValidateConfig
    from defectops.pipelines.submission import submit

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    project_params = yaml.safe_load(PARAMS.read_text())
    project_params["registry"] = {"backend": "sagemaker"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params))
    learned = {"kind": gate_profile.KIND, "classes": ["scratch"], "limits": {"brightness": [10.0, 90.0]}}
    gate_profile.write(learned, tmp_path / "data" / "gate" / "profile.json")
    settings = sagemaker.SageMakerSettings.from_params(PARAMS)
    with mock_aws():
        sm, s3 = boto3.client("sagemaker", region_name="eu-west-1"), boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        submission = submit("sagemaker", project_dir=tmp_path, sagemaker_client=sm, s3_client=s3)
        key = submission.details["params_s3_uri"].split(f"{settings.bucket}/", 1)[1]
        sent = yaml.safe_load(s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read())
    assert sent["validate"]["profile"] == learned
    config = ValidateConfig(**sent["validate"])
    assert gate_profile.load(config.profile, ["scratch"]) == learned
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == project_params  # the project's file untouched


@pytest.mark.e2e
def test_a_sagemaker_run_that_would_register_into_its_own_job_disk_is_refused(tmp_path, monkeypatch):
    from defectops.config import ConfigError
    from defectops.pipelines.submission import submit

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())  # registry.backend: mlflow, no shared server
    with mock_aws():
        sm, s3 = boto3.client("sagemaker", region_name="eu-west-1"), boto3.client("s3", region_name="eu-west-1")
        with pytest.raises(ConfigError, match="registry.backend.*sagemaker.mlflow_tracking_uri"):
            submit("sagemaker", project_dir=tmp_path, sagemaker_client=sm, s3_client=s3)
        assert sm.list_pipelines()["PipelineSummaries"] == []  # refused before anything was created

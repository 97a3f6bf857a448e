"""The review page on the SageMaker Model Registry (moto): same page, same rules, evidence from S3."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from defectops import audit  # noqa: E402
from defectops.dataset import sha256_file  # noqa: E402
from defectops.registries import open_registry  # noqa: E402
from defectops.sagemaker_registry import SageMakerRegistry  # noqa: E402
from defectops.ui import auth  # noqa: E402
from defectops.ui.app import create_app  # noqa: E402

from ..sagemaker_nodes import model_archive, run_node, stage_job  # noqa: E402

GROUP, BUCKET = "defectops-detector", "defectops-artifacts"
REPO = Path(__file__).resolve().parents[2]
MODEL_DATA = "Steps.train.ModelArtifacts.S3ModelArtifacts"
EVALUATION = "Steps.evaluate.ProcessingOutputConfig.Outputs['reports_evaluate'].S3Output.S3Uri"


@pytest.fixture(scope="module")
def register_node(tmp_path_factory):
    """The register node of the SageMaker pipeline definition this project compiles."""
    from defectops.pipelines.engines import compile_for, sagemaker

    out = compile_for("sagemaker", tmp_path_factory.mktemp("sm") / "pipeline.json", REPO / "params.yaml")
    return sagemaker.steps_by_name(json.loads(out.read_text()))["register"]


def run_pipeline_registration(node, root: Path, trained: Path, evaluated: Path, s3, run: str) -> None:
    """What one pipeline execution leaves behind: the training and evaluation jobs' outputs in S3, then the
    register node run with the definition's own arguments, as data.scientist's submission set it up."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["registry"] = {"backend": "sagemaker"}
    params["register"] = {**params["register"], "submitted_by": "data.scientist", "submitted_via": "sagemaker"}
    (root / run).mkdir(parents=True)
    (root / run / "params.yaml").write_text(yaml.safe_dump(params))
    evaluation_uri = f"s3://{BUCKET}/defectops/runs/{run}/reports_evaluate"
    for path in evaluated.iterdir():
        s3.upload_file(str(path), BUCKET, f"defectops/runs/{run}/reports_evaluate/{path.name}")
    job = stage_job(root / run, root / run / "params.yaml", {"models_train": trained, "reports_evaluate": evaluated},
                    model_archive_inputs=("models_train",))
    model_key = f"defectops/train/{run}/output/model.tar.gz"
    s3.upload_file(str(model_archive(trained, root / run / "model.tar.gz")), BUCKET, model_key)
    properties = {MODEL_DATA: f"s3://{BUCKET}/{model_key}", EVALUATION: evaluation_uri, "Parameters.Trigger": "drift"}
    result = run_node(node, job, properties)
    assert result.exit_code == 0, result.output


@pytest.fixture
def sagemaker(monkeypatch, tmp_path, register_node, trained, evaluated):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    with moto.mock_aws():
        s3, sm = boto3.client("s3"), boto3.client("sagemaker")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for run in ("run-1", "run-2"):
            run_pipeline_registration(register_node, tmp_path / "jobs", trained, evaluated, s3, run)
        open_registry(GROUP, "sagemaker", sm, s3).decide("approve", "1", "qa.lead", "first champion",
                                                         acknowledge=True)  # a fixture's thin val
        yield sm, s3


def test_the_pipelines_register_node_creates_the_package_every_backend_describes(sagemaker, trained, evaluated,
                                                                               tmp_path):
    """Same tags as an MLflow registration, the model and evaluation where the jobs left them, pending approval."""
    from defectops.components.register.step import RegisterConfig, register

    sm, _ = sagemaker
    package = SageMakerRegistry(GROUP, sm).describe("2")
    assert package["approval"] == "pending"
    raw = sm.describe_model_package(ModelPackageName=package["arn"])
    container = raw["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/defectops/train/run-2/output/model.tar.gz"
    assert raw["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{BUCKET}/defectops/runs/run-2/reports_evaluate/metrics.json")
    metadata = package["metadata"]
    run = json.loads((trained / "run.json").read_text())
    evaluation = json.loads((evaluated / "metrics.json").read_text())
    assert metadata["submitted_by"] == "data.scientist" and metadata["submitted_via"] == "service:sagemaker"
    assert metadata["trigger"] == "drift" and metadata["run_id"] == run["run_id"]
    assert float(metadata["threshold"]) == float(evaluation["threshold"])  # exact: what the endpoint will use
    assert metadata["weights_sha256"] == sha256_file(trained / "weights" / "best.pt")
    assert metadata["dataset_md5"] == run["dataset_md5"]
    in_mlflow = register(RegisterConfig(model_name="parity"), trained, evaluated, tmp_path / "mlflow")
    mlflow_tags = open_registry("parity").get(in_mlflow["version"]).tags
    assert {k for k, v in mlflow_tags.items() if v} - {"approval"} <= set(metadata)
    entries = audit.read(Path(os.environ["DEFECTOPS_AUDIT_LOG"]))
    registered = [e for e in entries if e["action"] == "register" and e["model"] == GROUP]
    assert [(e["model"], e["version"], e["actor"]) for e in registered] == [(GROUP, "1", "data.scientist"),
                                                                           (GROUP, "2", "data.scientist")]


def test_a_registration_the_gate_refused_creates_no_package(sagemaker, register_node, trained, evaluated, tmp_path):
    sm, s3 = sagemaker
    failed = tmp_path / "failed-evaluation"
    shutil.copytree(evaluated, failed)
    report = json.loads((failed / "metrics.json").read_text())
    report["gate"] = {**report["gate"], "passed": False, "reason": "recall below the champion's"}
    (failed / "metrics.json").write_text(json.dumps(report))
    run_pipeline_registration(register_node, tmp_path / "jobs", trained, failed, s3, "run-3")
    assert [p["version"] for p in SageMakerRegistry(GROUP, sm).list_versions()] == ["1", "2"]


def test_the_gate_and_a_warm_start_use_the_sagemaker_champion(sagemaker, trained, tiny_dataset, tmp_path):
    """With registry.backend sagemaker the champion is the newest Approved package: the gate scores its weights
    (fetched from the model.tar.gz the package names, hash-checked) and a drift retraining starts from them."""
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.train import weights as starting
    from defectops.registry import RegistryError

    sm, s3 = sagemaker
    store = open_registry(GROUP, "sagemaker", sm, s3)
    report = evaluate(EvaluateConfig(model_name=GROUP), trained, tiny_dataset, tmp_path / "eval", registry=store)
    assert report["gate"]["champion_version"] == "1" and report["gate"]["passed"]  # the same model is not worse
    (tmp_path / "start").mkdir()
    start = starting.resolve("champion", GROUP, tmp_path / "start", store)
    assert start.lineage["parent_version"] == "1"
    assert start.lineage["parent_weights_sha256"] == sha256_file(trained / "weights" / "best.pt")

    other = tmp_path / "other"  # the champion's model.tar.gz replaced in S3 by different weights
    shutil.copytree(trained, other)
    (other / "weights" / "best.pt").write_bytes(b"not the approved weights")
    s3.upload_file(str(model_archive(other, tmp_path / "other.tar.gz")), BUCKET,
                   "defectops/train/run-1/output/model.tar.gz")
    with pytest.raises(RegistryError, match="does not match"):
        store.fetch_weights(store.champion(), tmp_path / "tampered")


def test_an_edge_endpoint_serves_the_sagemaker_champion_only_with_an_audited_second_person(sagemaker, tiny_dataset,
                                                                                           tmp_path):
    """deploy and serve through the same protocol: a plant's edge box exports and serves the package a second
    person approved in defectops; a package approved around defectops (in the console) is not served."""
    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.components.deploy.serving import ChampionWatcher
    from defectops.components.deploy.step import DeployConfig, deploy

    sm, s3 = sagemaker
    store = open_registry(GROUP, "sagemaker", sm, s3)
    exported = deploy(DeployConfig(model_name=GROUP), tiny_dataset, tmp_path / "deploy", registry=store)
    assert exported["version"] == "1"
    recorded = store.get("1").tags
    assert recorded["onnx_sha256"] == sha256_file(tmp_path / "deploy" / "versions" / "v1" / "model.onnx")
    config = ServeConfig(model_name=GROUP, deploy_root=tmp_path / "deploy", records_url=None)
    watcher = ChampionWatcher(config, store)
    watcher.refresh()
    assert watcher.current.version == "1" and watcher.last_error is None

    sm.update_model_package(ModelPackageArn=store.get("2").source, ModelApprovalStatus="Approved")  # the console
    watcher.refresh()
    assert watcher.current.version == "1"  # keeps serving the audited champion
    assert "moved outside defectops" in watcher.last_error


def _login(client, name, password):
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": name, "password": password, "csrf": token})
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)


def test_review_and_approve_a_sagemaker_package(sagemaker, tmp_path, monkeypatch):
    sm, s3 = sagemaker
    users = tmp_path / "users.json"
    auth.add_user(users, "qa.lead", "quality-first-2026")
    auth.add_user(users, "data.scientist", "trains-models-2026")
    app = create_app(GROUP, users, backend=open_registry(GROUP, "sagemaker", sm, s3))
    with TestClient(app) as client:
        csrf = _login(client, "data.scientist", "trains-models-2026")
        listing = client.get("/").text
        assert 'href="/versions/2"' in listing and "drift" in listing
        page = client.get("/versions/2").text
        assert "(v2)" in page and "(v1)" in page and "Model card" in page  # champion = newest Approved
        assert client.get("/versions/2/pr.png").headers["content-type"] == "image/png"
        assert client.get("/versions/2/artifact/false_negatives.png").status_code == 200
        refused = client.post("/versions/2/decide", data={"action": "approve", "reason": "mine", "csrf": csrf})
        assert refused.status_code == 409 and "four-eyes rule" in refused.text

    with TestClient(app) as client:
        csrf = _login(client, "qa.lead", "quality-first-2026")
        thin = client.post("/versions/2/decide", data={"action": "approve", "reason": "evidence reviewed",
                                                       "csrf": csrf})
        assert thin.status_code == 409 and "acknowledge" in thin.text and 'id="evidence-warning"' in thin.text
        done = client.post("/versions/2/decide", data={"action": "approve", "reason": "evidence reviewed",
                                                       "acknowledge": "yes", "csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303
    package = SageMakerRegistry(GROUP, sm).describe("2")
    assert package["approval"] == "approved" and package["metadata"]["approved_by"] == "qa.lead"


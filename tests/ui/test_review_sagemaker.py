"""The review page on the SageMaker Model Registry (moto): same page, same rules, evidence from S3."""

import re

import pytest
from fastapi.testclient import TestClient

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from defectops.registries import open_registry  # noqa: E402
from defectops.sagemaker_registry import SageMakerRegistry  # noqa: E402
from defectops.ui import auth  # noqa: E402
from defectops.ui.app import create_app  # noqa: E402

GROUP, BUCKET = "defectops-detector", "defectops-artifacts"


@pytest.fixture
def sagemaker(monkeypatch, evaluated):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        s3, sm = boto3.client("s3"), boto3.client("sagemaker")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        for run, status in (("run-1", "Approved"), ("run-2", "PendingManualApproval")):
            for path in evaluated.iterdir():  # what the pipeline's evaluation step uploads
                s3.upload_file(str(path), BUCKET, f"{run}/evaluation/{path.name}")
            sm.create_model_package(
                ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
                ModelMetrics={"ModelQuality": {"Statistics": {
                    "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{run}/evaluation/metrics.json"}}},
                CustomerMetadataProperties={"submitted_by": "data.scientist", "trigger": "drift"})
        yield sm, s3


def _login(client, name, password):
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": name, "password": password, "csrf": token})
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)


def test_review_and_approve_a_sagemaker_package(sagemaker, tmp_path, monkeypatch):
    sm, s3 = sagemaker
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
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
        done = client.post("/versions/2/decide", data={"action": "approve", "reason": "evidence reviewed",
                                                       "csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303
    package = SageMakerRegistry(GROUP, sm).describe("2")
    assert package["approval"] == "approved" and package["metadata"]["approved_by"] == "qa.lead"


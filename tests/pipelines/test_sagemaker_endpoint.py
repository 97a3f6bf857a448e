"""SageMaker endpoint deployment, against moto; UpdateEndpoint, which moto lacks, via botocore's Stubber."""

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from botocore.stub import ANY, Stubber  # noqa: E402

from defectops.errors import RefusedError  # noqa: E402
from defectops.sagemaker_endpoint import deploy_model_package  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/defectops-sagemaker"


@pytest.fixture
def sagemaker(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        client = boto3.client("sagemaker")
        client.create_model_package_group(ModelPackageGroupName="g")
        arns = [client.create_model_package(
            ModelPackageGroupName="g", ModelApprovalStatus=status,
            InferenceSpecification={"Containers": [{"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/d:1",
                                                    "ModelDataUrl": "s3://models/v1/model.tar.gz"}],
                                    "SupportedContentTypes": ["image/png"],
                                    "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
            for status in ("Approved", "PendingManualApproval")]
        yield client, arns


def test_creates_endpoint_for_an_approved_package(sagemaker):
    client, (approved, _) = sagemaker
    result = deploy_model_package(client, "defect-line-3", approved, ROLE)
    assert result["action"] == "created"
    endpoint = client.describe_endpoint(EndpointName="defect-line-3")
    assert endpoint["EndpointConfigName"] == result["endpoint_config"]
    config = client.describe_endpoint_config(EndpointConfigName=result["endpoint_config"])
    assert config["ProductionVariants"][0]["ModelName"] == result["model"]


def test_pending_package_is_refused(sagemaker):
    client, (_, pending) = sagemaker
    with pytest.raises(RefusedError, match="PendingManualApproval; only Approved"):
        deploy_model_package(client, "defect-line-3", pending, ROLE)


def test_existing_endpoint_is_updated_in_place():
    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/2"
    with Stubber(client) as stub:
        stub.add_response("describe_model_package", {
            "ModelPackageName": "g", "ModelPackageArn": arn, "ModelPackageVersion": 2,
            "CreationTime": "2026-01-01T00:00:00Z", "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "ModelApprovalStatus": "Approved"}, {"ModelPackageName": arn})
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:eu-west-1:1:model/m"},
                          {"ModelName": ANY, "ExecutionRoleArn": ROLE, "Containers": [{"ModelPackageName": arn}]})
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:eu-west-1:1:ec/c"},
                          {"EndpointConfigName": ANY, "ProductionVariants": ANY})
        stub.add_response("describe_endpoint", {
            "EndpointName": "line", "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/line",
            "EndpointConfigName": "old", "EndpointStatus": "InService", "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z"}, {"EndpointName": "line"})
        stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/line"},
                          {"EndpointName": "line", "EndpointConfigName": ANY})
        result = deploy_model_package(client, "line", arn, ROLE)
        stub.assert_no_pending_responses()
    assert result["action"] == "updated" and result["endpoint_config"].startswith("line-cfg-v2-")

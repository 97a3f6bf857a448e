"""SageMaker Model Registry parity, against moto (AWS APIs cannot exist here)."""

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from defectops import audit  # noqa: E402
from defectops.registry import RegistryError  # noqa: E402
from defectops.sagemaker_registry import SageMakerRegistry  # noqa: E402

GROUP = "defectops-detector"


@pytest.fixture
def sagemaker(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("DEFECTOPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    with moto.mock_aws():
        client = boto3.client("sagemaker")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        for _ in range(2):  # packages as another tool would have created them
            client.create_model_package(ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
                                        CustomerMetadataProperties={"submitted_by": "data.scientist",
                                                                    "test_recall": "0.97"})
        yield client


def test_approve_maps_to_update_model_package(sagemaker, tmp_path):
    registry = SageMakerRegistry(GROUP, sagemaker)
    assert [v["approval"] for v in registry.list_versions()] == ["pending", "pending"]
    with pytest.raises(RegistryError, match="four-eyes"):
        registry.approve("1", "data.scientist", "mine")
    approved = registry.approve("1", "qa.lead", "recall 0.97")
    raw = sagemaker.describe_model_package(ModelPackageName=approved["arn"])
    assert raw["ModelApprovalStatus"] == "Approved"
    assert raw["CustomerMetadataProperties"]["approved_by"] == "qa.lead"
    assert raw["CustomerMetadataProperties"]["test_recall"] == "0.97"  # evidence kept
    with pytest.raises(RegistryError, match="only 'pending'"):
        registry.approve("1", "qa.lead", "again")

    rejected = registry.reject("2", "qa.lead", "misses scratches")
    assert sagemaker.describe_model_package(ModelPackageName=rejected["arn"])["ModelApprovalStatus"] == "Rejected"
    with pytest.raises(RegistryError, match="no version 7"):
        registry.approve("7", "qa.lead", "x")
    assert [(e["action"], e["phase"]) for e in audit.read(tmp_path / "audit.jsonl")] == [
        ("approve", "intent"), ("approve", "done"), ("reject", "intent"), ("reject", "done")]
    assert audit.verify(tmp_path / "audit.jsonl") == 4


def test_thin_evidence_needs_the_approvers_acknowledgement_on_sagemaker_too(sagemaker, tmp_path):
    warning = "the threshold was tuned on 12 defective images: even catching all of them cannot show recall >= 0.95"
    sagemaker.create_model_package(ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
                                   CustomerMetadataProperties={"submitted_by": "data.scientist",
                                                               "evidence_warning": warning})
    registry = SageMakerRegistry(GROUP, sagemaker)
    with pytest.raises(RegistryError, match="acknowledge-evidence"):
        registry.approve("3", "qa.lead", "recall 0.97")
    assert registry.describe("3")["approval"] == "pending"
    approved = registry.approve("3", "qa.lead", "recall 0.97; 12 defects acknowledged", acknowledge=True)
    assert sagemaker.describe_model_package(ModelPackageName=approved["arn"])["ModelApprovalStatus"] == "Approved"
    done = [e for e in audit.read(tmp_path / "audit.jsonl") if e["phase"] == "done"]
    assert done[-1]["details"]["acknowledged_evidence_warning"] == warning


def test_cli_backend_sagemaker(sagemaker, tmp_path):
    from typer.testing import CliRunner

    from defectops.cli import app
    from defectops.ui import auth

    users = tmp_path / "users.json"
    auth.add_user(users, "data.scientist", "trains-models-2026")
    auth.add_user(users, "qa.lead", "quality-first-2026")
    runner = CliRunner()
    as_user = ["--backend", "sagemaker", "--model-name", GROUP, "--users", str(users), "--password-stdin", "--user"]
    refused = runner.invoke(app, ["registry", "approve", "1", "--reason", "x", *as_user, "Data.Scientist"],
                            input="trains-models-2026\n")
    assert refused.exit_code == 4 and "four-eyes" in refused.output
    ok = runner.invoke(app, ["registry", "reject", "2", "--reason", "too many false rejects", *as_user, "qa.lead"],
                       input="quality-first-2026\n")
    assert ok.exit_code == 0, ok.output
    assert SageMakerRegistry(GROUP, sagemaker).describe("2")["approval"] == "rejected"


def test_the_group_anchors_the_audit_log(sagemaker, tmp_path):
    from typer.testing import CliRunner

    from defectops.cli import app

    registry = SageMakerRegistry(GROUP, sagemaker)
    registry.approve("1", "qa.lead", "recall 0.97")
    log = tmp_path / "audit.jsonl"
    assert audit.verify(log, registry.audit_anchors()) == 2
    verify = ["audit", "verify", "--path", str(log), "--backend", "sagemaker", "--model-name", GROUP]
    assert CliRunner().invoke(app, verify).exit_code == 0
    log.write_text(log.read_text().splitlines()[0] + "\n")  # the confirmation cut off
    assert CliRunner().invoke(app, verify).exit_code == 5
    with pytest.raises(audit.AuditError, match="tail was cut off"):
        registry.reject("2", "qa.lead", "decided on a log that does not verify")
    assert registry.describe("2")["approval"] == "pending"


def test_decisions_store_only_what_sagemaker_accepts_in_package_metadata(sagemaker):
    """AWS refuses CustomerMetadataProperties values outside its pattern (moto does not check): a reason with
    commas, brackets or a '>=' must not turn an approval into a failed call on the real service."""
    regex = pytest.importorskip("regex")
    import botocore.session

    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("CustomerMetadataMap")
    allowed = regex.compile(shape.value.metadata["pattern"].split("$")[0] + "$")
    reason = "Evidence reviewed (v1): recall ≥ 0.97, no misses on 'scratch'; OK! " + "x" * 300
    approved = SageMakerRegistry(GROUP, sagemaker).approve("1", "qa.lead", reason)
    stored = sagemaker.describe_model_package(ModelPackageName=approved["arn"])["CustomerMetadataProperties"]
    for key, value in stored.items():
        assert 1 <= len(value) <= shape.value.metadata["max"] and allowed.fullmatch(value), (key, value)
    assert stored["decision_reason"].startswith("Evidence reviewed v1 : recall 0.97 no misses on scratch OK")

"""infra/ is code too: Terraform parses and passes checkov, manifests validate, Dockerfiles lint clean,
and the cloud side agrees with the pipeline (labels, taints, volumes, parameters)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import kubernetes_validate
import pytest
import yaml

from defectops.pipelines.engines import kfp

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
K8S = REPO / "infra" / "k8s"
K8S_VERSION = "1.31.0"


def _plain(value):
    """python-hcl2 8 keeps HCL's quotes and block markers; the checks read plain values."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    return value


@pytest.fixture(scope="module")
def terraform() -> dict:
    """Every resource and data block of infra/terraform, as python-hcl2 parses them."""
    blocks: dict = {"resource": {}, "data": {}}
    for tf in sorted(TERRAFORM.glob("*.tf")):
        with tf.open() as fh:
            parsed = _plain(hcl2.load(fh))
        for kind in blocks:
            for block in parsed.get(kind, []):
                for type_name, named in block.items():
                    for name, body in named.items():
                        blocks[kind][f"{type_name}.{name}"] = body
    return blocks


def test_terraform_parses_and_builds_what_the_pipeline_needs(terraform):
    resources = terraform["resource"]
    gpu = resources["aws_eks_node_group.gpu_spot"]
    assert gpu["capacity_type"] == "SPOT"
    assert gpu["labels"] == {kfp.GPU_NODE_LABEL[0]: kfp.GPU_NODE_LABEL[1]}  # what training pods select
    assert gpu["taint"][0]["key"] == kfp.GPU_TAINT and gpu["taint"][0]["effect"] == "NO_SCHEDULE"
    cluster = resources["aws_eks_cluster.main"]
    assert cluster["vpc_config"][0]["endpoint_public_access"] is False
    assert cluster["encryption_config"][0]["resources"] == ["secrets"]
    sse = resources["aws_s3_bucket_server_side_encryption_configuration.all"]["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    assert resources["aws_s3_bucket_versioning.all"]["versioning_configuration"][0]["status"] == "Enabled"
    assert resources["aws_kms_key.data"]["enable_key_rotation"] is True
    assert set(resources["aws_ecr_repository.images"]["for_each"].strip("${}").split('"')[1::2]) == {
        "defectops", "defectops-train"}
    schedule = resources["aws_cloudwatch_event_target.schedule"]["sagemaker_pipeline_target"][0]
    assert schedule["pipeline_parameter_list"][0] == {"name": "Trigger", "value": "schedule"}
    approved = resources["aws_cloudwatch_event_rule.approved"]["event_pattern"]
    assert "Approved" in approved and "SageMaker Model Package State Change" in approved


def test_sagemaker_role_is_least_privilege(terraform):
    policy = terraform["data"]["aws_iam_policy_document.sagemaker"]["statement"]
    for statement in policy:
        assert not any(a.endswith(":*") or a == "*" for a in statement["actions"]), statement
        if statement["resources"] == ["*"]:
            # Only the two APIs that have no resource-level permissions.
            assert statement["actions"] in (["ecr:GetAuthorizationToken"], ["cloudwatch:PutMetricData"]), statement


def test_schedule_parameter_exists_in_the_sagemaker_pipeline():
    definition = json.loads((REPO / "pipelines" / "compiled" / "sagemaker_pipeline.json").read_text())
    assert "Trigger" in {p["Name"] for p in definition["Parameters"]}


@pytest.mark.e2e
def test_checkov_finds_no_failed_checks():
    checkov = shutil.which("checkov") or str(REPO / ".venv-iac" / "bin" / "checkov")
    if not Path(checkov).exists():
        if os.environ.get("CI"):
            pytest.fail("checkov is not installed (.ci/run installs it into .venv-iac)")
        pytest.skip("checkov not installed here: python -m venv .venv-iac && .venv-iac/bin/pip install checkov")
    result = subprocess.run([checkov, "-d", str(TERRAFORM), "--framework", "terraform", "--skip-download",
                             "--output", "json", "--quiet"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report.get("results", {}).get("failed_checks", [])]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 100


def _manifests():
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def test_kubernetes_manifests_validate_against_the_schema():
    checked = 0
    for path, doc in _manifests():
        if doc["kind"] == "Kustomization":
            for resource in doc["resources"]:
                assert (path.parent / resource).exists(), f"{path}: {resource} does not exist"
            continue
        if doc["kind"] == "InferenceService":  # a CRD: validate the pod it runs as a core Pod
            predictor = doc["spec"]["predictor"]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]},
                   "spec": {k: predictor[k] for k in ("containers", "volumes", "serviceAccountName")
                            if k in predictor}}
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 4


def test_cluster_objects_match_the_pipeline():
    docs = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _manifests() if "metadata" in doc}
    assert ("PersistentVolumeClaim", kfp.CHECKPOINT_PVC) in docs
    assert ("ServiceAccount", "defectops-pipeline") in docs


def test_dockerfiles_lint_clean_and_run_the_step_clis():
    hadolint = Path(sys.executable).parent / "hadolint"
    dockerfiles = sorted((REPO / "infra" / "docker").glob("Dockerfile*"))
    assert len(dockerfiles) == 2
    result = subprocess.run([str(hadolint), "--config", str(REPO / ".hadolint.yaml"), *map(str, dockerfiles)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        assert "\nUSER 10001:10001\n" in text  # non-root
        assert "defectops" in text.split("ENTRYPOINT", 1)[1].splitlines()[0]
    assert 'ENTRYPOINT ["defectops", "pipeline", "sagemaker-training"]' in (
        REPO / "infra" / "docker" / "Dockerfile.train").read_text()

"""SageMaker Model Registry behind the same rules as the MLflow registry.

A model package group is the registered model; package versions carry ModelApprovalStatus
(PendingManualApproval / Approved / Rejected). Approve and reject map to
`update_model_package(ModelApprovalStatus=...)`; who and why go to CustomerMetadataProperties,
every decision to the same signed audit log as local ones, and its head to a tag on the group.
"""

from __future__ import annotations

import getpass
import unicodedata
from datetime import UTC, datetime

from defectops import approval, audit, identity
from defectops.approval import RegistryError

ANCHOR_TAG = "defectops:audit_head"
STATUS = {"PendingManualApproval": "pending", "Approved": "approved", "Rejected": "rejected"}
AWS_STATUS = {v: k for k, v in STATUS.items()}
CONTENT_TYPES, RESPONSE_TYPES = ["image/png", "image/jpeg"], ["application/json"]
INFERENCE_INSTANCES, TRANSFORM_INSTANCES = ["ml.m5.large", "ml.g5.xlarge"], ["ml.m5.large"]
_METADATA_MARKS = set("_.:/=+-@")


def metadata_value(value: object) -> str:
    """A value SageMaker accepts in CustomerMetadataProperties: letters, digits, spaces and `_.:/=+-@`, at most
    256 characters. Anything else (a reason's commas, a gate's '>=') becomes a space rather than a rejected call."""
    text = "".join(c if unicodedata.category(c)[0] in "LNZ" or c in _METADATA_MARKS else " " for c in str(value))
    return " ".join(text.split())[:256]


def metadata(values: dict) -> dict[str, str]:
    """Empty values dropped (SageMaker refuses them) and every value made acceptable."""
    cleaned = {str(k)[:128]: metadata_value(v) for k, v in values.items()}
    return {k: v for k, v in cleaned.items() if v}


class SageMakerRegistry:
    def __init__(self, group: str, sagemaker_client=None):
        import boto3

        self.group = group
        self.sm = sagemaker_client or boto3.client("sagemaker")

    def _packages(self) -> list[dict]:
        pages = self.sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=self.group)
        return [p for page in pages for p in page["ModelPackageSummaryList"]]

    def _arn(self, version: str) -> str:
        for package in self._packages():
            if str(package["ModelPackageVersion"]) == str(version):
                return package["ModelPackageArn"]
        raise RegistryError(f"SageMaker model package group '{self.group}' has no version {version}")

    def _raw(self, version: str) -> dict:
        return self.sm.describe_model_package(ModelPackageName=self._arn(version))

    def describe(self, version: str, raw: dict | None = None) -> dict:
        d = raw or self._raw(version)
        return {"version": str(d["ModelPackageVersion"]), "arn": d["ModelPackageArn"],
                "approval": STATUS.get(d["ModelApprovalStatus"], d["ModelApprovalStatus"]),
                "metadata": dict(d.get("CustomerMetadataProperties") or {})}

    def _group_arn(self) -> str:
        return self.sm.describe_model_package_group(ModelPackageGroupName=self.group)["ModelPackageGroupArn"]

    def _anchor(self, entry: dict) -> None:
        """The group's tag keeps the head of its audit entries, as the MLflow registry's model tag does."""
        arn = self._group_arn()
        self.sm.delete_tags(ResourceArn=arn, TagKeys=[ANCHOR_TAG])
        self.sm.add_tags(ResourceArn=arn, Tags=[{"Key": ANCHOR_TAG, "Value": audit.head(entry)}])

    def audit_anchors(self) -> dict[str, str]:
        tags = self.sm.list_tags(ResourceArn=self._group_arn())["Tags"]
        heads = [t["Value"] for t in tags if t["Key"] == ANCHOR_TAG]
        return {self.group: heads[-1]} if heads else {}

    def _ensure_group(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.sm.describe_model_package_group(ModelPackageGroupName=self.group)
        except ClientError:
            self.sm.create_model_package_group(ModelPackageGroupName=self.group,
                                               ModelPackageGroupDescription="Defect detector registered by defectops.")

    def register_pending(self, model_uri: str, image: str, tags: dict, evidence_uri: str | None) -> dict:
        """A new package version, PendingManualApproval, tagged as the MLflow registry tags its versions.

        The register step's audit entry goes to this machine's log but is not anchored on the group: in a
        pipeline job that log is the job's own disk, and an anchor pointing into it would make every
        approver's log fail verification. The decisions that follow are anchored as usual."""
        for field, uri in (("model_uri", model_uri), ("evaluation_uri", evidence_uri)):
            if not uri or not str(uri).startswith("s3://"):
                raise RegistryError(f"register.{field} is '{uri or ''}': a SageMaker model package needs an S3 URI "
                                    "(the SageMaker pipeline sets both; elsewhere upload the model.tar.gz and the "
                                    "evaluation folder and set them)")
        self._ensure_group()
        submitted_by = identity.normalise(tags.get("submitted_by")) or identity.current_user()
        properties = metadata({**tags, "submitted_by": submitted_by,
                               "registered_at": datetime.now(UTC).isoformat(timespec="seconds")})
        arn = self.sm.create_model_package(
            ModelPackageGroupName=self.group, ModelApprovalStatus="PendingManualApproval",
            ModelPackageDescription="defectops detector; evaluation (threshold, recall, PR curve, model card) in "
                                    "ModelMetrics",
            InferenceSpecification={"Containers": [{"Image": image, "ModelDataUrl": model_uri}],
                                    "SupportedContentTypes": CONTENT_TYPES,
                                    "SupportedResponseMIMETypes": RESPONSE_TYPES,
                                    "SupportedRealtimeInferenceInstanceTypes": INFERENCE_INSTANCES,
                                    "SupportedTransformInstanceTypes": TRANSFORM_INSTANCES},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                          "S3Uri": f"{str(evidence_uri).rstrip('/')}/metrics.json"}}},
            CustomerMetadataProperties=properties)["ModelPackageArn"]
        package = self.sm.describe_model_package(ModelPackageName=arn)
        version = str(package["ModelPackageVersion"])
        audit.append("register", submitted_by, self.group, version, run_id=tags.get("run_id"),
                     os_user=getpass.getuser(), submitted_via=tags.get("submitted_via"), backend="sagemaker",
                     arn=arn, dataset_md5=tags.get("dataset_md5"), weights_sha256=tags.get("weights_sha256"),
                     feedback_labellers=tags.get("feedback_labellers", ""),
                     evidence_warning=tags.get("evidence_warning", ""))
        return self.describe(version)

    def record(self, version: str, tags: dict) -> dict:
        """Add evidence to a package's metadata (kept: everything already there)."""
        raw = self._raw(version)
        info = self.describe(version, raw)
        # The status and its description are sent back unchanged: an update that omits them must not clear them
        # (moto's does).
        kept = {k: raw[k] for k in ("ModelApprovalStatus", "ApprovalDescription") if raw.get(k)}
        self.sm.update_model_package(ModelPackageArn=info["arn"], **kept,
                                     CustomerMetadataProperties=metadata({**info["metadata"], **tags}))
        return self.describe(version)

    def list_versions(self) -> list[dict]:
        # Described by the ARN each summary carries: one listing, not one more per package.
        return [self.describe(str(p["ModelPackageVersion"]),
                              self.sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]))
                for p in self._packages()]

    def _decide(self, version: str, by: str, reason: str, decision: str, acknowledge: bool = False) -> dict:
        info = self.describe(version)
        entries = audit.verified_entries(anchors=self.audit_anchors())
        submitted = approval.submitters(info["metadata"], entries, self.group, version)
        warning = approval.evidence_warning(info["metadata"], entries, self.group, version)
        by = approval.check_decision(self.group, version, info["approval"], submitted, by, reason, decision,
                                     warning, acknowledge)
        acknowledged = approval.acknowledgement(warning, decision)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        prefix = "approved" if decision == "approved" else "rejected"
        properties = metadata({**info["metadata"], f"{prefix}_by": by, f"{prefix}_at": now, "decision_reason": reason})
        with audit.recorded("approve" if decision == "approved" else "reject", by, self.group, version,
                            anchor=self._anchor, reason=reason, backend="sagemaker", arn=info["arn"], **acknowledged):
            self.sm.update_model_package(ModelPackageArn=info["arn"], ModelApprovalStatus=AWS_STATUS[decision],
                                         ApprovalDescription=f"{by}: {reason}"[:1024],
                                         CustomerMetadataProperties=properties)
        return self.describe(version)

    def approve(self, version: str, by: str, reason: str, acknowledge: bool = False) -> dict:
        """Approved packages are what the EventBridge rule deploys (see infra/)."""
        return self._decide(version, by, reason, "approved", acknowledge)

    def reject(self, version: str, by: str, reason: str) -> dict:
        return self._decide(version, by, reason, "rejected")

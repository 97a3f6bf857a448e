"""SageMaker Model Registry behind the same rules as the MLflow registry.

A model package group is the registered model; package versions carry ModelApprovalStatus
(PendingManualApproval / Approved / Rejected). Approve and reject map to
`update_model_package(ModelApprovalStatus=...)`; who and why go to CustomerMetadataProperties,
every decision to the same signed audit log as local ones, and its head to a tag on the group.
"""

from __future__ import annotations

from datetime import UTC, datetime

from defectops import approval, audit
from defectops.approval import RegistryError

ANCHOR_TAG = "defectops:audit_head"
STATUS = {"PendingManualApproval": "pending", "Approved": "approved", "Rejected": "rejected"}
AWS_STATUS = {v: k for k, v in STATUS.items()}


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

    def describe(self, version: str) -> dict:
        d = self.sm.describe_model_package(ModelPackageName=self._arn(version))
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

    def list_versions(self) -> list[dict]:
        return [self.describe(str(p["ModelPackageVersion"])) for p in self._packages()]

    def _decide(self, version: str, by: str, reason: str, decision: str) -> dict:
        info = self.describe(version)
        entries = audit.verified_entries(anchors=self.audit_anchors())
        submitted = approval.submitters(info["metadata"], entries, self.group, version)
        by = approval.check_decision(self.group, version, info["approval"], submitted, by, reason, decision)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        prefix = "approved" if decision == "approved" else "rejected"
        metadata = {**info["metadata"], f"{prefix}_by": by, f"{prefix}_at": now, "decision_reason": reason[:256]}
        with audit.recorded("approve" if decision == "approved" else "reject", by, self.group, version,
                            anchor=self._anchor, reason=reason, backend="sagemaker", arn=info["arn"]):
            self.sm.update_model_package(ModelPackageArn=info["arn"], ModelApprovalStatus=AWS_STATUS[decision],
                                         ApprovalDescription=f"{by}: {reason}"[:1024],
                                         CustomerMetadataProperties=metadata)
        return self.describe(version)

    def approve(self, version: str, by: str, reason: str) -> dict:
        """Approved packages are what the EventBridge rule deploys (see infra/)."""
        return self._decide(version, by, reason, "approved")

    def reject(self, version: str, by: str, reason: str) -> dict:
        return self._decide(version, by, reason, "rejected")

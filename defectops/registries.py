"""One registry protocol, two places a model can be registered: MLflow's registry and SageMaker's.

`open_registry` is the one place that picks (from `registry.backend` in params.yaml, or a command's
`--backend`); the register step, the CLI and the review page use only the protocol. Both implementations decide
through the same four-eyes rule (`defectops.approval`) and write the same signed audit log.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field

from defectops import registry
from defectops.config import StepConfig
from defectops.evidence import load_folder
from defectops.sagemaker_registry import SageMakerRegistry
from defectops.tracking import tracking_uri

BACKENDS = ("mlflow", "sagemaker")


class RegistryConfig(StepConfig):
    backend: Literal["mlflow", "sagemaker"] = Field(
        "mlflow", description="Where versions are registered and decided: MLflow's registry (local, KFP) or "
                              "SageMaker's Model Registry (a model package group named after the model).")


class Registry(Protocol):
    """What the register step, the CLI and the review page need of a registry."""

    model_name: str

    def register_pending(self, model_uri: str, run_id: str, tags: dict[str, str],
                         evidence_uri: str | None = None) -> registry.VersionInfo:
        """A new version pending approval (never approved here); `evidence_uri` is the evaluation folder the
        review page shows, where the registry does not keep it itself."""

    def versions(self) -> list[registry.VersionInfo]: ...

    def get(self, version: str) -> registry.VersionInfo: ...

    def champion(self) -> registry.VersionInfo | None: ...

    def fetch_weights(self, info: registry.VersionInfo, dest: Path) -> Path:
        """The version's best.pt under `dest`, refused unless it hashes to the sha256 recorded at registration
        (the champion/challenger gate scores it; a warm start begins from it; deploy exports it)."""

    def by_alias(self, alias: str) -> registry.VersionInfo | None:
        """The version holding `alias` (champion, or a challenger), or None."""

    def served_refusal(self, info: registry.VersionInfo, role: str = registry.CHAMPION) -> str | None:
        """Why `info` must not be served in `role`, or None: the four-eyes rule on the verified audit log."""

    def audited_champion(self) -> registry.VersionInfo | None:
        """The version the signed audit log last made champion: what an endpoint starts on when the alias was
        moved outside defectops."""

    def record(self, version: str, tags: dict[str, str]) -> registry.VersionInfo:
        """Evidence added after registration (deploy's hashes of what the endpoint will load)."""

    def decide(self, action: str, version: str, by: str, reason: str,
               acknowledge: bool = False) -> registry.VersionInfo:
        """`action`: approve, reject or approve_canary; the four-eyes rule applies to each, and an approval of a
        version whose evidence cannot show the recall target needs `acknowledge`."""

    def rollback(self, by: str, reason: str) -> registry.VersionInfo: ...

    def evidence(self, version: str): ...

    def audit_anchors(self) -> dict[str, str]: ...


def open_registry(model_name: str, backend: str = "mlflow", sagemaker_client=None, s3_client=None,
                  image: str | None = None) -> Registry:
    """The registry holding `model_name`, on `backend` (`image`: the serving image new SageMaker packages name)."""
    if backend == "mlflow":
        return MlflowRegistry(model_name)
    if backend == "sagemaker":
        return SageMakerModelRegistry(model_name, sagemaker_client, s3_client, image)
    raise registry.RegistryError(f"registry backend '{backend}': expected one of {', '.join(BACKENDS)}")


def open_registry_from(params: Path, model_name: str, backend: str | None = None) -> Registry:
    """The registry a command or step works on: `backend` if given, else params.yaml's `registry.backend`."""
    from defectops.config import load_step_config, read_params

    backend = backend or load_step_config(RegistryConfig, "registry", params).backend
    image = (read_params(params).get("sagemaker") or {}).get("image") if backend == "sagemaker" else None
    return open_registry(model_name, backend, image=image)


class MlflowRegistry:
    def __init__(self, model_name: str):
        self.model_name = model_name

    def register_pending(self, model_uri: str, run_id: str, tags: dict[str, str],
                         evidence_uri: str | None = None) -> registry.VersionInfo:
        # The evaluation folder is an artefact of the run: the review page finds it there.
        return registry.register_pending(self.model_name, model_uri, run_id, tags)

    def versions(self) -> list[registry.VersionInfo]:
        return registry.list_versions(self.model_name)

    def get(self, version: str) -> registry.VersionInfo:
        return registry.get_version(self.model_name, version)

    def champion(self) -> registry.VersionInfo | None:
        return registry.by_alias(self.model_name, registry.CHAMPION)

    def fetch_weights(self, info: registry.VersionInfo, dest: Path) -> Path:
        return registry.fetch_weights(info, dest)

    def by_alias(self, alias: str) -> registry.VersionInfo | None:
        return registry.by_alias(self.model_name, alias)

    def served_refusal(self, info: registry.VersionInfo, role: str = registry.CHAMPION) -> str | None:
        return registry.served_refusal(info, role)

    def audited_champion(self) -> registry.VersionInfo | None:
        version = registry.audited_champion(self.model_name)
        return self.get(version) if version else None

    def record(self, version: str, tags: dict[str, str]) -> registry.VersionInfo:
        registry.set_tags(self.model_name, version, tags)
        return self.get(version)

    def decide(self, action: str, version: str, by: str, reason: str,
               acknowledge: bool = False) -> registry.VersionInfo:
        if action == "reject":
            return registry.reject(self.model_name, version, by, reason)
        if action not in ("approve", "approve_canary"):
            raise registry.RegistryError(f"'{action}': expected approve, reject or approve_canary")
        return getattr(registry, action)(self.model_name, version, by, reason, acknowledge)

    def rollback(self, by: str, reason: str) -> registry.VersionInfo:
        return registry.rollback(self.model_name, by, reason)

    def evidence(self, version: str):
        info = self.get(version)
        return load_folder(info, _mlflow_evaluation(info.run_id) if info.run_id else None)

    def audit_anchors(self) -> dict[str, str]:
        return registry.audit_anchors(self.model_name)


@lru_cache(maxsize=256)
def _mlflow_evaluation(run_id: str) -> Path | None:
    """Evaluation artefacts of a run, fetched once per process (runs are immutable)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation",
                                                        tracking_uri=tracking_uri()))
    except (MlflowException, OSError):
        return None


class SageMakerModelRegistry:
    """A model package group; evidence is the evaluation folder its ModelMetrics statistics point to in S3."""

    def __init__(self, group: str, sagemaker_client=None, s3_client=None, image: str | None = None):
        self.model_name = group
        self.packages = SageMakerRegistry(group, sagemaker_client)
        self._s3, self.image = s3_client, image
        self._cache = Path(tempfile.mkdtemp(prefix="defectops-ui-s3-"))

    @property
    def s3(self):
        import boto3

        self._s3 = self._s3 or boto3.client("s3")
        return self._s3

    def register_pending(self, model_uri: str, run_id: str, tags: dict[str, str],
                         evidence_uri: str | None = None) -> registry.VersionInfo:
        if not self.image:
            raise registry.RegistryError("a SageMaker model package names its serving image: set sagemaker.image "
                                         "in params.yaml")
        package = self.packages.register_pending(model_uri, self.image, {**tags, "run_id": run_id}, evidence_uri)
        return self.get(package["version"])

    def _info(self, package: dict, champion_version: str | None) -> registry.VersionInfo:
        aliases = [registry.CHAMPION] if package["version"] == champion_version else []
        return registry.VersionInfo(self.model_name, package["version"], package["arn"], "",
                                    {**package["metadata"], "approval": package["approval"]}, aliases)

    def versions(self) -> list[registry.VersionInfo]:
        packages = self.packages.list_versions()
        approved = [p["version"] for p in packages if p["approval"] == "approved"]
        # The newest approved package is what the approval EventBridge rule deploys: the champion.
        champion = max(approved, key=int) if approved else None
        return sorted((self._info(p, champion) for p in packages), key=lambda v: int(v.version))

    def get(self, version: str) -> registry.VersionInfo:
        for info in self.versions():
            if info.version == str(version):
                return info
        raise registry.RegistryError(f"SageMaker model package group '{self.model_name}' has no version {version}")

    def champion(self) -> registry.VersionInfo | None:
        return self.by_alias(registry.CHAMPION)

    def by_alias(self, alias: str) -> registry.VersionInfo | None:
        """Only the champion exists here (the newest Approved package): canaries are MLflow-registry actions."""
        return next((v for v in self.versions() if alias in v.aliases), None)

    def served_refusal(self, info: registry.VersionInfo, role: str = registry.CHAMPION) -> str | None:
        return registry.served_refusal(info, role, self.audit_anchors())

    def audited_champion(self) -> registry.VersionInfo | None:
        version = registry.audited_champion(self.model_name, self.audit_anchors())
        return self.get(version) if version else None

    def record(self, version: str, tags: dict[str, str]) -> registry.VersionInfo:
        self.packages.record(version, tags)
        return self.get(version)

    def fetch_weights(self, info: registry.VersionInfo, dest: Path) -> Path:
        """The package's model.tar.gz (its container's ModelDataUrl), unpacked; weights/best.pt in it."""
        import tarfile

        raw = self.packages.sm.describe_model_package(ModelPackageName=info.source)
        url = raw["InferenceSpecification"]["Containers"][0].get("ModelDataUrl", "")
        if not url.startswith("s3://"):
            raise registry.RegistryError(f"{self.model_name} v{info.version}: its container has no S3 model data "
                                         f"('{url}'); nothing to fetch")
        bucket, key = url.removeprefix("s3://").split("/", 1)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / "model.tar.gz"
        self.s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(dest / "model", filter="data")
        weights = dest / "model" / "weights" / "best.pt"
        if not weights.is_file():
            raise registry.RegistryError(f"{url}: no weights/best.pt inside; expected the train step's output folder")
        return registry.verified_weights(weights, info)

    def decide(self, action: str, version: str, by: str, reason: str,
               acknowledge: bool = False) -> registry.VersionInfo:
        if action == "approve_canary":
            raise registry.RegistryError("canary clearance is an MLflow-registry action; on SageMaker use the "
                                         "endpoint's production variants")
        if action not in ("approve", "reject"):
            raise registry.RegistryError(f"'{action}': expected approve or reject")
        if action == "approve":
            self.packages.approve(version, by, reason, acknowledge)
        else:
            self.packages.reject(version, by, reason)
        return self.get(version)

    def rollback(self, by: str, reason: str) -> registry.VersionInfo:
        raise registry.RegistryError("on SageMaker, roll back by redeploying the previous Approved package "
                                     "('defectops sagemaker deploy-endpoint --model-package-arn ...')")

    def evidence(self, version: str):
        info = self.get(version)
        raw = self.packages.sm.describe_model_package(ModelPackageName=info.source)
        uri = raw.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
        return load_folder(info, self._download(uri) if uri else None)

    def audit_anchors(self) -> dict[str, str]:
        return self.packages.audit_anchors()

    def _download(self, metrics_uri: str) -> Path:
        bucket, key = metrics_uri.removeprefix("s3://").split("/", 1)
        prefix = key.rsplit("/", 1)[0] + "/"
        folder = self._inside_cache(self._cache / bucket / prefix, metrics_uri)
        if not (folder / "metrics.json").exists():
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    target = self._inside_cache(folder / obj["Key"][len(prefix):], f"s3://{bucket}/{obj['Key']}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.s3.download_file(bucket, obj["Key"], str(target))
        return folder

    def _inside_cache(self, path: Path, source: str) -> Path:
        """S3 keys may hold '../': one that would land outside the cache is refused, never written."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self._cache.resolve()):
            raise registry.RegistryError(f"{source}: the key leaves the evidence folder ('..' in an S3 key); "
                                         "refused")
        return resolved

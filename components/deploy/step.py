"""Deploy: export the approved champion to ONNX and prepare what the endpoint and monitor need.

Triggered by approval, not by the training DAG: only a version a human approved gets here.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from pydantic import Field

from defectops import registry
from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.monitor.features import image_features
from defectops.config import StepConfig
from defectops.dataset import read_manifest, read_names, sha256_file
from defectops.errors import RefusedError
from defectops.metrics import StepTimer, write_metrics


class DeployConfig(StepConfig):
    model_name: str = Field("defectops-detector", min_length=1)
    reference_splits: list[str] = Field(["val"], description="Held-out splits that define 'normal' for drift.")


class DeployError(RefusedError):
    """No approved champion, or its artefact does not match the registry."""


def fetch_champion(model_name: str, dest: Path) -> tuple[registry.VersionInfo, Path]:
    """Download the champion's weights and check them against the sha256 recorded at registration."""
    import mlflow

    champion = registry.by_alias(model_name, registry.CHAMPION)
    if champion is None:
        raise DeployError(f"model '{model_name}' has no champion yet: approve a version first "
                          "('defectops registry approve VERSION --by NAME')")
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=str(dest)))
    weights = local / "best.pt" if local.is_dir() else local
    expected = champion.tags.get("weights_sha256")
    actual = sha256_file(weights)
    if expected and actual != expected:
        raise DeployError(f"{weights}: sha256 {actual} does not match the registry's {expected} for "
                          f"{model_name} v{champion.version}; refusing to deploy a modified artefact")
    return champion, weights


def export_onnx(weights: Path, imgsz: int, out: Path) -> Path:
    from defectops.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO

    exported = YOLO(str(weights), task="detect").export(format="onnx", imgsz=imgsz, simplify=True,
                                                       dynamic=False, verbose=False)
    target = out / "model.onnx"
    shutil.move(str(exported), target)
    return target


def write_reference(detector: OnnxDetector, dataset: Path, splits: list[str], path: Path) -> int:
    """Features of held-out images as the endpoint will log them: the drift baseline."""
    rows = [r for r in read_manifest(dataset) if r["split"] in splits]
    with open(path, "w", newline="") as fh:
        writer = None
        for row in rows:
            rgb = detector.decode((dataset / row["path"]).read_bytes())
            detections = detector.predict(rgb)
            scores = [d.score for d in detections]
            record = {"path": row["path"], **image_features(rgb),
                      "max_confidence": max(scores, default=0.0),
                      "n_detections": sum(s >= detector.threshold for s in scores),
                      "decision": decide(scores, detector.threshold)}
            if writer is None:
                writer = csv.DictWriter(fh, fieldnames=list(record))
                writer.writeheader()
            writer.writerow(record)
    return len(rows)


def deploy(config: DeployConfig, dataset: Path, out: Path) -> dict:
    timer = StepTimer()
    dataset, out = Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        champion, weights = fetch_champion(config.model_name, Path(tmp))
        imgsz = int(champion.tags.get("imgsz", 256))
        onnx_path = export_onnx(weights, imgsz, out)
    meta = {"model_name": champion.name, "version": champion.version, "run_id": champion.run_id,
            "threshold": float(champion.tags["threshold"]), "imgsz": imgsz, "names": read_names(dataset),
            "onnx_sha256": sha256_file(onnx_path), "weights_sha256": champion.tags.get("weights_sha256"),
            "approved_by": champion.tags.get("approved_by")}
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    n_ref = write_reference(OnnxDetector(out), dataset, config.reference_splits, out / "reference.csv")
    metrics = {"model_name": champion.name, "version": champion.version, "reference_images": n_ref,
               "onnx_bytes": onnx_path.stat().st_size, "seconds": timer.seconds()}
    write_metrics(out / "deploy_metrics.json", metrics)
    return metrics

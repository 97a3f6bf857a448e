"""Deploy: export the approved champion to ONNX and prepare what the endpoint and monitor need.

Triggered by approval, not by the training DAG: only a version a human approved gets here.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from defectops.components.deploy.decision import decide
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.observe import observe
from defectops.components.deploy.quantize import quantize_int8
from defectops.components.deploy.runtimes import run_errors
from defectops.components.deploy.variants import cannot_run, judge, measure
from defectops.components.deploy.verify import (
    REFERENCE,
    DeployError,
    artefact_tags,
    variant_key,
    variant_of,
    version_dir,
)
from defectops.config import StepConfig
from defectops.dataset import read_manifest, read_names, sha256_file
from defectops.drift_features import EMBEDDING_DIMS, EmbeddingReducer
from defectops.metrics import StepTimer, write_metrics
from defectops.offline import configure_ultralytics
from defectops.registries import Registry, open_registry
from defectops.registry import CHAMPION, VersionInfo
from defectops.tiling import needs_tiling, tiling_of

log = logging.getLogger("defectops.deploy")


class DeployConfig(StepConfig):
    model_name: str = Field("defectops-detector", min_length=1)
    alias: Literal["champion", "challenger"] = Field(
        "champion", description="champion (approved) or challenger (only once cleared for canary traffic).")
    reference_splits: list[str] = Field(["val"], description="Held-out splits that define 'normal' for drift.")
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto", description="auto: a detector tries int8 and keeps it only if the gate verifies it, else fp32 (no "
                            "error). int8: static quantisation calibrated on training images, refused (exit 4) if "
                            "the gate says no; fp16: OpenVINO on CPUs with FP16 units. Anything but fp32 on ONNX "
                            "Runtime is re-validated before it is served.")
    runtime: Literal["onnxruntime", "openvino"] = Field("onnxruntime", description="The engine the endpoint runs.")
    max_precision_drop: float = Field(0.02, ge=0, le=1, description="A variant whose test precision falls more "
                                      "than this below the FP32 export's is refused (its recall must meet the "
                                      "target at its own val-tuned threshold).")
    calibration_images: int = Field(64, ge=1, description="Training images that set INT8 activation ranges.")

    @model_validator(mode="after")
    def _fp16_needs_openvino(self):
        if self.precision == "fp16" and self.runtime != "openvino":
            raise ValueError("deploy.precision fp16: ONNX Runtime's CPU provider gains nothing from FP16 (it "
                             "converts back to FP32); use runtime openvino, or precision int8")
        return self


def export_onnx(weights: Path, imgsz: int, out: Path) -> tuple[Path, str, list[str]]:
    """Ultralytics' ONNX export, plus the backbone's last feature map as a second output (for drift).

    Returns the file, the model's task and its class names in output order."""
    import onnx

    configure_ultralytics()
    from ultralytics import YOLO

    from defectops.anomaly import memory as anomaly

    checkpoint = anomaly.load(weights)
    if checkpoint is not None:  # its graph already ends in (score, map, embedding)
        anomaly.export_onnx(checkpoint, out / "model.onnx")
        return out / "model.onnx", anomaly.ANOMALY, [anomaly.ANOMALY]
    model = YOLO(str(weights))
    backbone_end = len(model.model.yaml["backbone"]) - 1
    # A dynamic batch axis lets the endpoint run concurrent requests' images in one call (micro-batching).
    exported = model.export(format="onnx", imgsz=imgsz, simplify=True, dynamic=True, verbose=False)
    target = out / "model.onnx"
    shutil.move(str(exported), target)
    graph = onnx.load(str(target))
    prefix = f"/model.{backbone_end}/"
    last = [n for n in graph.graph.node if n.name.startswith(prefix)]
    if last:  # nodes are topologically sorted: the last one emits the block's output
        graph.graph.output.append(onnx.helper.make_tensor_value_info(last[-1].output[0], onnx.TensorProto.FLOAT,
                                                                     None))
        onnx.save(graph, str(target))
    return target, model.task, [model.names[i] for i in sorted(model.names)]


def write_reference(detector: OnnxDetector, dataset: Path, splits: list[str], folder: Path) -> int:
    """Features of held-out images exactly as the endpoint logs them: the drift baseline.

    Also fits the embedding projection on these images, so live embeddings are expressed in the
    reference's own principal directions.
    """
    rows = [r for r in read_manifest(dataset) if r["split"] in splits]
    observed = []
    for row in rows:
        rgb = detector.decode((dataset / row["path"]).read_bytes())
        _, record, embedding = observe(detector, rgb, None)
        observed.append((row["path"], record, embedding))
    embeddings = [e for _, _, e in observed if e is not None]
    reducer = EmbeddingReducer.fit(np.stack(embeddings)) if len(embeddings) > EMBEDDING_DIMS else None
    if reducer is not None:
        reducer.save(folder)
    with open(folder / "reference.csv", "w", newline="") as fh:
        writer = None
        for path, record, embedding in observed:
            full = {"path": path, **record, **(reducer.transform(embedding) if reducer else {}),
                    "decision": decide(record["max_confidence"], detector.threshold)}
            if writer is None:
                writer = csv.DictWriter(fh, fieldnames=list(full))
                writer.writeheader()
            writer.writerow(full)
    return len(rows)


def calibration_blobs(detector: OnnxDetector, dataset: Path, n: int):
    """`n` training images spread over the split (defective and good alike), as the endpoint feeds them (a model
    trained on tiles sees a tile: the centre one)."""
    train = [r["path"] for r in read_manifest(dataset) if r["split"] == "train"]
    if not train:
        raise DeployError(f"{dataset}: no training images to calibrate INT8 on (manifest.csv split 'train')")
    for i in np.linspace(0, len(train) - 1, min(n, len(train))).round().astype(int):
        rgb = detector.decode((dataset / train[i]).read_bytes())
        if detector.tiles and needs_tiling(*rgb.shape[:2], detector.tiles[0]):
            side, (h, w) = detector.tiles[0], rgb.shape[:2]
            top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
            rgb = np.ascontiguousarray(rgb[top:top + side, left:left + side])
        yield detector.blob(rgb)


AUTO_PRECISION = "int8"  # the fastest variant that kept recall on the default model (bench/serve_precision.py)


def wanted_variant(config: DeployConfig, task: str) -> tuple[str, str]:
    """(precision, runtime) to try. `auto` tries INT8 for detectors (the quantiser's head rule is theirs) and
    stays FP32 for other tasks."""
    if config.precision != "auto":
        return config.precision, config.runtime
    return (AUTO_PRECISION if task == "detect" else "fp32"), config.runtime


def make_variant(config: DeployConfig, info: VersionInfo, dataset: Path, staging: Path, registry: Registry,
                 precision: str, meta: dict) -> tuple[dict, dict]:
    """Build the variant beside the FP32 export in `staging` (described by `meta`), put both through the gate, and
    move the variant into place only if verified. Returns the model.json now in `staging` and the checks.

    Both are recorded in the registry, verified or refused, so the approver sees them side by side. A refusal
    raises (nothing is deployed) unless the precision was `auto`, where the FP32 export stays."""
    if precision == "int8" and meta["task"] != "detect":
        raise DeployError(f"deploy.precision int8: verified for detectors only; this version's task is "
                          f"'{meta['task']}' (deploy it as fp32, or fp32/fp16 on openvino)")
    target = float(info.tags.get("target_recall", 0.95))
    # The recall evaluation tuned its threshold for (a version registered before that tag: the target itself).
    tuning = float(info.tags.get("tuning_recall") or target)
    reference, _ = measure(staging, dataset, meta["onnx_sha256"], (tuning, target), meta["threshold"])
    reference = replace(reference, verdict="reference")
    candidate = staging / "variant"
    candidate.mkdir()
    if precision == "int8":
        quantize_int8(staging / "model.onnx", candidate / "model.onnx",
                      calibration_blobs(OnnxDetector(staging), dataset, config.calibration_images))
    else:
        shutil.copyfile(staging / "model.onnx", candidate / "model.onnx")
    candidate_meta = {**meta, "precision": precision, "runtime": config.runtime,
                      "evaluated_threshold": meta["threshold"], "onnx_sha256": sha256_file(candidate / "model.onnx")}
    (candidate / "model.json").write_text(json.dumps(candidate_meta, indent=2) + "\n")
    try:
        measured, flagged = measure(candidate, dataset, candidate_meta["onnx_sha256"], (tuning, target))
    except run_errors() as error:  # e.g. a quantised node that breaks on an input shape calibration never had
        variant, refusal = cannot_run(variant_of(candidate_meta), candidate_meta["onnx_sha256"], error)
        flagged = {"error": refusal}
    else:
        variant, refusal = judge(measured, reference, target, config.max_precision_drop)
    registry.record(info.version, {**reference.tag(), **variant.tag()})
    checks = {c.key: {**asdict(c), **extra} for c, extra in ((reference, {}), (variant, flagged))}
    refused = (f"{info.name} v{info.version} as {variant.key} refused by the re-validation gate: {refusal}"
               if refusal else None)
    if refused and config.precision != "auto":
        raise DeployError(f"{refused}. Nothing deployed: what the endpoint serves is unchanged")
    if refused:
        log.warning("%s; deploying FP32 (deploy.precision auto)", refused)
    else:
        meta = {**candidate_meta, "threshold": variant.threshold}
        (candidate / "model.onnx").replace(staging / "model.onnx")
        (staging / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(candidate)
    return meta, checks


def deploy(config: DeployConfig, dataset: Path, out: Path, registry: Registry | None = None) -> dict:
    """Export the aliased version to `out/versions/v<N>/` and record the ONNX sha256 in the registry.

    The folder appears in one rename, after the registry holds its hash, so a running endpoint
    never sees half an export and can always verify what it loads. `registry`: the one params.yaml
    names (the CLI opens it); default MLflow's.
    """
    timer = StepTimer()
    dataset, out = Path(dataset), Path(out)
    registry = registry or open_registry(config.model_name)
    info = registry.by_alias(config.alias)
    if info is None:
        raise DeployError(f"model '{config.model_name}' has no {config.alias} yet: approve a version first "
                          "('defectops registry approve VERSION --reason TEXT')")
    refusal = registry.served_refusal(info, "champion" if config.alias == CHAMPION else "canary")
    if refusal:
        raise DeployError(refusal)
    (out / "versions").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out / "versions", prefix=".staging-") as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        weights = registry.fetch_weights(info, Path(tmp) / "download")
        shutil.copyfile(weights, staging / "best.pt")
        imgsz = int(info.tags.get("imgsz", 256))
        onnx_path, task, output_classes = export_onnx(staging / "best.pt", imgsz, staging)
        meta = {"model_name": info.name, "version": info.version, "run_id": info.run_id, "task": task,
                "output_classes": output_classes,
                "threshold": float(info.tags["threshold"]), "imgsz": imgsz, "names": read_names(dataset),
                **dict(zip(("tile", "tile_overlap"), tiling_of(info.tags) or ())),
                "onnx_sha256": sha256_file(onnx_path), "weights_sha256": info.tags.get("weights_sha256"),
                "approved_by": info.tags.get("approved_by")}
        (staging / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        checks = {}
        precision, runtime = wanted_variant(config, task)
        if variant_key(precision, runtime) != REFERENCE:
            meta, checks = make_variant(config, info, dataset, staging, registry, precision, meta)
        n_ref = write_reference(OnnxDetector(staging), dataset, config.reference_splits, staging)
        registry.record(info.version, {"onnx_sha256": meta["onnx_sha256"], **artefact_tags(staging),
                                       "deployed_variant": variant_of(meta)})
        target = version_dir(out, info.version)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    metrics = {"model_name": info.name, "version": info.version, "path": str(target),
               "precision": meta.get("precision", "fp32"), "runtime": meta.get("runtime", "onnxruntime"),
               "threshold": meta["threshold"], "variants": checks, "reference_images": n_ref,
               "onnx_bytes": (target / "model.onnx").stat().st_size,
               "seconds": timer.seconds()}
    write_metrics(target / "deploy_metrics.json", metrics)
    return metrics

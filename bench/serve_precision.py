"""Each served variant (precision x runtime) under the same load, in one run: throughput flat out, p50/p99 at
fixed offered rates, test recall/precision at each variant's own re-tuned threshold, and where a request's time
goes outside the model.

    .venv/bin/python bench/serve_precision.py [--epochs 40] [--seconds 15] [--clients 8]

Trains the default detector (yolov8n, 256 px) on the synthetic default, registers and approves it, then for each
variant runs `defectops deploy --precision P --runtime R` (the re-validation gate decides; a refused variant is
reported and not served), starts `defectops serve` on loopback with the decision store on (SQLite), and drives
it with concurrent clients posting 256 px PNGs. The first row is the endpoint as it was before this work (FP32 ONNX
Runtime, one model call per image, 2 inference threads): the reference every gain is measured against.
`--work DIR` reuses an earlier run's trained and approved model; `--only TEXT` runs the rows whose label has it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import yaml
from _endpoint import build_endpoint, served
from _project import print_table, scratch_work
from serve_load import drive

# The endpoint's settings before this work (2 inference threads, one model call per image, FP32), on today's code.
BEFORE = {"inference_workers": 2}
BATCHED = {"micro_batch": 16}
ROWS = (  # label, precision, runtime, serve settings (else the defaults)
    ("fp32 onnxruntime, before", "fp32", "onnxruntime", BEFORE),
    ("fp32 onnxruntime", "fp32", "onnxruntime", {}),
    ("fp32 onnxruntime, micro-batched", "fp32", "onnxruntime", BATCHED),
    ("int8 onnxruntime", "int8", "onnxruntime", {}),
    ("int8 onnxruntime, micro-batched", "int8", "onnxruntime", BATCHED),
    ("int8 onnxruntime, micro-batched, batch_wait_ms 2", "int8", "onnxruntime", {**BATCHED, "batch_wait_ms": 2}),
    ("fp32 openvino", "fp32", "openvino", {}),
    ("int8 openvino", "int8", "openvino", {}),
)


def in_process(folder: Path, bodies: list[bytes], config) -> dict:
    """ms per image for the model call alone and for the whole decision without HTTP (no store): the rest of
    `predict_one` is decode, letterbox, NMS, drift features and hashing."""
    from defectops.components.deploy.detector import OnnxDetector
    from defectops.components.deploy.http_input import decode_image
    from defectops.components.deploy.inference import Inference, Metrics
    from defectops.components.deploy.serving import LoadedModel
    from defectops.drift_features import EmbeddingReducer
    from defectops.records.archive import ImageArchive

    detector = OnnxDetector(folder)
    model = LoadedModel("bench", detector, folder, None, EmbeddingReducer.load(folder))
    inference = Inference(config.model_copy(update={"archive_accept_share": 0.0}), ImageArchive(folder / "scratch"),
                          Metrics())
    blobs = [detector.blob(np.asarray(decode_image(b, config))) for b in bodies[:64]]
    for blob in blobs[:5]:
        detector.runner.run(blob)
    started = time.perf_counter()
    for blob in blobs:
        detector.runner.run(blob)
    model_ms = 1000 * (time.perf_counter() - started) / len(blobs)
    started = time.perf_counter()
    for body in bodies[:64]:
        inference.predict_one(model, "champion", body, {})
    return {"model": model_ms, "decision": 1000 * (time.perf_counter() - started) / len(blobs[:64])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rates", default="20,60")
    parser.add_argument("--only", default="", help="rows whose label contains this text")
    parser.add_argument("--work", type=Path, help="reuse an earlier run's work dir (its trained, approved model)")
    args = parser.parse_args()
    work = args.work or scratch_work("defectops-precision-")
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                      DEFECTOPS_ARTIFACT_ROOT=(work / "mlartifacts").as_uri(),
                      DEFECTOPS_AUDIT_LOG=str(work / "audit.jsonl"))
    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.components.deploy.step import DeployConfig, deploy
    from defectops.components.deploy.verify import DeployError, version_dir
    from defectops.dataset import read_manifest

    if args.work:
        params = work / "params.yaml"
    else:
        print(f"training the default detector ({args.epochs} epochs, 256 px) ...", flush=True)
        params = build_endpoint(work, image_size=256, n_images=400, reason="precision bench", epochs=args.epochs)[1]
    test = [(work / "raw" / r["path"]).read_bytes() for r in read_manifest(work / "raw") if r["split"] == "test"]
    # A reused work dir's params.yaml still holds its last row's settings.
    base = {k: v for k, v in yaml.safe_load(params.read_text())["serve"].items()
            if k not in ("micro_batch", "inference_workers", "batch_wait_ms", "max_batch")}
    rates = [float(r) for r in args.rates.split(",")]
    key, table, breakdown, gate = "bench-key", [], [], {}
    for label, precision, runtime, serve in [row for row in ROWS if args.only in row[0]]:
        try:
            deployed = deploy(DeployConfig(precision=precision, runtime=runtime), work / "raw", work / "deploy")
        except DeployError as exc:
            table.append((label, "refused", "", "", "", "", str(exc)[:90]))
            continue
        gate.update(deployed["variants"])
        variant = gate.get(f"{precision}-{runtime}", {})
        params.write_text(yaml.safe_dump({"serve": {**base, **serve}}))
        config = ServeConfig(**{**base, **serve})
        with served(params, key) as url:
            flat = drive(url, key, test, 0, args.clients, args.seconds)
            fixed = [drive(url, key, test, rate, args.clients, args.seconds) for rate in rates]
        cells = [f"{flat[0] / flat[1]:.1f}", f"{flat[3]}"]
        for done, seconds, latencies, errors in fixed:
            p50, p99 = np.percentile(latencies, [50, 99])
            cells.append(f"{done / seconds:.1f}/s: {p50:.1f} / {p99:.1f} ms, {errors} err")
        recall = (f"{variant['test_recall']:.3f} / {variant['test_precision']:.3f} @ {variant['threshold']:.4g}"
                  if variant else "as evaluated (reference)")
        table.append((label, *cells, recall))
        split = in_process(version_dir(work / "deploy", "1"), test, config)
        p50_20 = np.percentile(fixed[0][2], 50)
        breakdown.append((label, f"{split['model']:.2f}", f"{split['decision'] - split['model']:.2f}",
                          f"{p50_20 - split['decision']:.2f}", f"{p50_20:.2f}"))
    print(f"\nloopback HTTP, {args.clients} clients, {args.seconds:.0f} s per load, 256 px PNG test images, decisions "
          f"recorded (SQLite); {os.cpu_count()} cores")
    print_table(table, ("served as", "images/s flat out", "errors", *[f"offered {r:.0f}/s: p50 / p99" for r in rates],
                        "test recall / precision @ its threshold (gate)"))
    print("\nwhere one image's time goes (ms; model and decision in-process, one at a time; HTTP = client p50 at "
          f"{rates[0]:.0f}/s minus the in-process decision):")
    print_table(breakdown, ("served as", "model call", "decision outside the model", "HTTP + queueing",
                            f"client p50 at {rates[0]:.0f}/s"))
    reference = gate.get("fp32-onnxruntime")
    if reference:
        print(f"\nFP32 reference on the endpoint's path: test recall {reference['test_recall']:.3f}, precision "
              f"{reference['test_precision']:.3f} at the evaluated threshold {reference['threshold']:.4g}")
    print(f"work dir {work}")


if __name__ == "__main__":
    main()

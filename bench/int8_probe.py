"""Which nodes of the default detector must stay FP32 under ONNX Runtime static INT8 (QDQ), and what each choice
does to recall at its own re-tuned threshold. All variants in one run; the product's quantiser
(`components/deploy/quantize.py`) keeps the head's decode FP32 because of what this measured.

    .venv/bin/python bench/int8_probe.py --epochs 15

Trains the default detector on the synthetic default (256 px), exports it as deploy does, quantises it with 64
training images as calibration (per-channel weights, uint8 activations), and for each variant tunes the
recall-first threshold on val (target 0.95) and reports test recall, precision and latency (OnnxDetector.predict:
letterbox, inference, decode, NMS; 2 threads). Variants: everything INT8; the detection head's decode (DFL,
sigmoid, the box/score concatenation) kept FP32; that plus the class-logit convolutions kept FP32.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
from _project import print_table, scratch_work

HEAD = "/model.22/"  # yolov8n's Detect block in the exported graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--weights", type=Path, help="a detector already trained on the synthetic default (e.g. "
                                                     "serve_precision.py's work dir/model/weights/best.pt)")
    args = parser.parse_args()
    work = scratch_work("defectops-int8-")
    from defectops.components.deploy.detector import OnnxDetector
    from defectops.components.deploy.quantize import head_decode_nodes, quantize_int8
    from defectops.components.deploy.step import export_onnx
    from defectops.components.deploy.variants import score_split
    from defectops.components.evaluate.threshold import image_level_metrics, tune_threshold
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset import read_manifest, read_names

    raw = work / "raw"
    ingest(IngestConfig(), raw)
    if not args.weights:
        train(TrainConfig(epochs=args.epochs, imgsz=256, checkpoint_dir=work / "ck"), raw, work / "model")
    rows, names = read_manifest(raw), read_names(raw)
    fp32 = work / "fp32"
    fp32.mkdir()
    shutil.copyfile(args.weights or work / "model" / "weights" / "best.pt", fp32 / "best.pt")
    export_onnx(fp32 / "best.pt", 256, fp32)

    def describe(folder: Path) -> None:
        (folder / "model.json").write_text(json.dumps({"imgsz": 256, "names": names, "threshold": 0.5,
                                                       "task": "detect"}))

    describe(fp32)
    reference = OnnxDetector(fp32, threads=2)
    calibration = [r["path"] for r in rows if r["split"] == "train"][:args.calibration]

    def calibration_blobs():
        """The endpoint's own preprocessing of training images."""
        return (reference.blob(reference.decode((raw / path).read_bytes())) for path in calibration)

    def class_logits_too(graph) -> list[str]:
        head = [n.name for n in graph.node if n.name.startswith(HEAD)]
        return head_decode_nodes(graph) + [n for n in head if "/cv3." in n and n.split("/")[-2].endswith(".2")]

    variants = {"fp32": fp32}
    for name, keep_fp32 in (("int8 everything", lambda graph: []), ("int8, head decode fp32", head_decode_nodes),
                            ("int8, decode + class logits fp32", class_logits_too)):
        folder = work / name.replace(" ", "_").replace(",", "").replace("+", "and")
        folder.mkdir()
        quantize_int8(fp32 / "model.onnx", folder / "model.onnx", calibration_blobs(), keep_fp32)
        describe(folder)
        variants[name] = folder

    def scored(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        return score_split(OnnxDetector(folder, threads=2), raw, [r["path"] for r in rows if r["split"] == split])

    table = []
    for name, folder in variants.items():
        val, val_truth, _ = scored(folder, "val")
        test, test_truth, ms = scored(folder, "test")
        threshold = tune_threshold(val, val_truth, 0.95)
        m = image_level_metrics(test, test_truth, threshold)
        table.append((name, f"{ms:.2f}", f"{threshold:.4f}", f"{m['recall']:.3f}", f"{m['precision']:.3f}",
                      f"{int((test >= threshold).sum())}/{len(test)}"))
    print_table(table, ("variant", "ms/image (predict, 2 threads)", "val-tuned threshold", "test recall",
                        "test precision", "test images flagged"))
    print(f"\n{os.cpu_count()} cores; {args.weights or f'{args.epochs} epochs'}; work dir {work}")


if __name__ == "__main__":
    main()

"""Groundwork for the edge-speed issue: ONNX Runtime static INT8 (QDQ) of the default detector, which nodes must
stay FP32, and what each variant does to recall at its own re-tuned threshold. All variants in one run.

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
import time
from pathlib import Path

import numpy as np
from _project import print_table, scratch_work

HEAD = "/model.22/"  # yolov8n's Detect block in the exported graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--calibration", type=int, default=64)
    args = parser.parse_args()
    work = scratch_work("defectops-int8-")
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from defectops.components.deploy.detector import OnnxDetector
    from defectops.components.deploy.step import export_onnx
    from defectops.components.evaluate.threshold import image_level_metrics, tune_threshold
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset import label_path, read_labels, read_manifest, read_names

    raw = work / "raw"
    ingest(IngestConfig(), raw)
    train(TrainConfig(epochs=args.epochs, imgsz=256, checkpoint_dir=work / "ck"), raw, work / "model")
    rows, names = read_manifest(raw), read_names(raw)
    fp32 = work / "fp32"
    fp32.mkdir()
    shutil.copyfile(work / "model" / "weights" / "best.pt", fp32 / "best.pt")
    export_onnx(fp32 / "best.pt", 256, fp32)

    def describe(folder: Path) -> None:
        (folder / "model.json").write_text(json.dumps({"imgsz": 256, "names": names, "threshold": 0.5,
                                                       "task": "detect"}))

    describe(fp32)
    reference = OnnxDetector(fp32, threads=2)
    calibration = [r["path"] for r in rows if r["split"] == "train"][:args.calibration]

    class Calibration(CalibrationDataReader):
        """The endpoint's own preprocessing of training images."""

        def __init__(self):
            self.paths = iter(calibration)

        def get_next(self):
            path = next(self.paths, None)
            if path is None:
                return None
            canvas, _, _ = reference._letterbox(reference.decode((raw / path).read_bytes()))
            return {reference.input_name: canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0}

    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32 / "model.onnx"), str(prepared), skip_symbolic_shape=True)
    head = [n.name for n in onnx.load(str(prepared)).graph.node if n.name.startswith(HEAD)]
    decode = [n for n in head if "/cv2." not in n and "/cv3." not in n]
    class_logits = [n for n in head if "/cv3." in n and n.split("/")[-2].endswith(".2")]
    variants = {"fp32": fp32}
    for name, exclude in (("int8 everything", []), ("int8, head decode fp32", decode),
                          ("int8, decode + class logits fp32", decode + class_logits)):
        folder = work / name.replace(" ", "_").replace(",", "").replace("+", "and")
        folder.mkdir()
        quantize_static(str(prepared), str(folder / "model.onnx"), Calibration(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=exclude)
        describe(folder)
        variants[name] = folder

    def scored(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        detector = OnnxDetector(folder, threads=2)
        paths = [r["path"] for r in rows if r["split"] == split]
        scores, seconds = [], 0.0
        for path in paths:
            rgb = detector.decode((raw / path).read_bytes())
            started = time.perf_counter()
            found = detector.predict(rgb)
            seconds += time.perf_counter() - started
            scores.append(max((d.score for d in found), default=0.0))
        truth = np.array([bool(read_labels(label_path(raw, p))) for p in paths])
        return np.array(scores), truth, 1000 * seconds / len(paths)

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
    print(f"\n{os.cpu_count()} cores; {args.epochs} epochs; work dir {work}")


if __name__ == "__main__":
    main()

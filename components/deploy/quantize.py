"""INT8 by static post-training quantisation (ONNX Runtime's quantizer, QDQ), calibrated on the endpoint's own
preprocessing of training images.

What must stay FP32, measured (`bench/int8_probe.py`): a YOLO head ends in one tensor that concatenates box
coordinates (0..imgsz) with class scores (0..1). Quantised together under one scale, a score's resolution is
about imgsz/255 ≈ 1, so every score rounds to 0 or 1 and the recall-first threshold means nothing. The head's
decode (the nodes after its convolution branches: DFL, sigmoid, box arithmetic, the final concatenation) stays
FP32; its convolutions and the whole backbone run INT8 (VNNI on this CPU). Arithmetic on sizes (pads computed
from the input's shape) stays FP32 too: see `shape_arithmetic_nodes`. The re-validation gate
(`variants.py`) is what decides whether a quantised file may be served, whatever this module did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

# Convolution branches of a YOLOv8/11 head: cv2 (box distributions), cv3 (class logits), cv4 (mask coefficients).
HEAD_CONV_BRANCHES = ("/cv2.", "/cv3.", "/cv4.")


def head_decode_nodes(graph) -> list[str]:
    """Nodes of the block that produces the graph's first output, outside its convolution branches.

    Found from the graph (the block that emits the output), not a layer number: yolov8 and yolo11 differ."""
    producer = {out: node for node in graph.node for out in node.output}
    last = producer[graph.output[0].name].name
    prefix = "/".join(last.split("/")[:2]) + "/"  # '/model.22/'
    return [n.name for n in graph.node
            if n.name.startswith(prefix) and not any(branch in n.name for branch in HEAD_CONV_BRANCHES)]


def shape_arithmetic_nodes(graph) -> list[str]:
    """Nodes whose outputs hold no image values, only sizes: arithmetic on `Shape` and constants.

    TF-'same' padding (timm's EfficientNet-Lite, the pretrained backbone) computes each stride-2 convolution's
    pads from the input's size with float Div/Ceil/Mul/Add. Quantised, those scalars round (a pad of 1 became 0),
    every map shrinks and the neck's Concat fails: measured on the pretrained tiles detector (16 vs 14 rows).
    Sizes are not activations; they stay exact."""
    constants = {init.name for init in graph.initializer} | {""}
    sizes: set[str] = set()
    kept = []
    for node in graph.node:  # topologically sorted
        if node.op_type == "Shape" or all(i in constants or i in sizes for i in node.input):
            sizes.update(node.output)
            kept.append(node.name)
    return kept


def default_fp32_nodes(graph) -> list[str]:
    """What stays FP32 unless a caller says otherwise: the head's decode and the graph's size arithmetic."""
    return head_decode_nodes(graph) + shape_arithmetic_nodes(graph)


def quantize_int8(source: Path, target: Path, calibration: Iterable[np.ndarray],
                  keep_fp32: Callable[[object], list[str]] = default_fp32_nodes) -> list[str]:
    """Write an INT8 (QDQ, per-channel int8 weights, uint8 activations) copy of `source`; returns the nodes left
    FP32 (`keep_fp32` picks them from the prepared graph). `calibration`: blobs exactly as the endpoint builds
    them."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    blobs = iter(calibration)
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def get_next(self):
            blob = next(blobs, None)
            return None if blob is None else {input_name: blob}

    with tempfile.TemporaryDirectory(dir=Path(target).parent, prefix=".quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Symbolic shape inference stops at Ultralytics' dynamic axes; ONNX's own shape inference is enough here.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        excluded = keep_fp32(onnx.load(str(prepared)).graph)
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    return excluded

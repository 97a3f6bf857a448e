"""The engines that run an exported model.onnx: ONNX Runtime, or OpenVINO reading the same file.

Both take the same NCHW float blob and return the graph's outputs in the file's order, so everything around
them (letterbox, decode, NMS, outlines, drift features) is one code path. OpenVINO's Python converter (`ovc`)
reports usage; it is never imported: the runtime reads the ONNX file itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Runtime = Literal["onnxruntime", "openvino"]
RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")


class Runner(Protocol):
    batched: bool  # the file's batch axis is dynamic: several images may go through in one call

    def run(self, blob: np.ndarray) -> list[np.ndarray]: ...


def _dynamic_batch(dim: object) -> bool:
    return not isinstance(dim, int) or dim < 1


class OnnxRuntimeRunner:
    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads sleep instead of spinning: at the endpoint the same cores decode, judge and answer
        # requests between model calls, and a spinning pool takes their time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name, self.batched = first.name, _dynamic_batch(first.shape[0])

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: blob})


class OpenVinoRunner:
    """One compiled model, one infer request per calling thread (a request is not thread-safe)."""

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError as exc:  # an optional engine: say how to get it
            raise RuntimeError("runtime 'openvino' needs the openvino package (pip install openvino)") from exc
        core = ov.Core()
        model = core.read_model(str(path))
        self.batched = model.inputs[0].get_partial_shape()[0].is_dynamic
        # Explicit: on CPUs with bf16 units OpenVINO would otherwise pick bf16 for an FP32 file. An INT8 file's
        # quantised layers run INT8 whatever this says; f16 where the CPU has FP16 units (f32 elsewhere).
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f16" if precision == "fp16" else "f32",
                  **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.compiled = core.compile_model(model, "CPU", config)
        self.outputs = list(self.compiled.outputs)
        self._local = threading.local()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({0: blob})
        return [np.array(result[port]) for port in self.outputs]  # copies: the request reuses its buffers


def run_errors() -> tuple[type[BaseException], ...]:
    """What the engines raise when a file that loaded cannot run an input (a shape its graph cannot take, a
    quantised node that breaks on it): the re-validation gate refuses such a variant instead of failing the
    deployment. ONNX Runtime's errors are its own classes (not RuntimeError); OpenVINO raises RuntimeError."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    return (RuntimeError, ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.RuntimeException,
            ort_errors.NotImplemented, ort_errors.EPFail)


def open_runner(path: Path, runtime: str = "onnxruntime", threads: int | None = None,
                precision: str = "fp32") -> Runner:
    if runtime == "onnxruntime":
        return OnnxRuntimeRunner(path, threads)
    if runtime == "openvino":
        return OpenVinoRunner(path, threads, precision)
    raise ValueError(f"{path}: runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")

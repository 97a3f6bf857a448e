"""What one anomaly image costs at the endpoint: the project's exported patch memory against the previous graph
(the reference), same backbone, same memory, same run.

    .venv/bin/python bench/anomaly_search.py                    # 8,000 x 64 memory, 256 px, 300 calls each
    .venv/bin/python bench/anomaly_search.py --patches 16000 --imgsz 320 --calls 500

The memory search (each of the image's patches against every remembered patch) is most of an anomaly model's
serving time. The reference computes the full squared-distance matrix the textbook way, |q|^2 - 2 q.m + |m|^2,
clamps it and takes each row's minimum: after the matrix product, four passes over a patches x memory matrix.
The project folds |m|^2 into the product (one more column) and adds |q|^2 after the minimum: one product, one
minimum. Both graphs are exported by the project's own export and run by the endpoint's own runner (ONNX Runtime,
spinning off), one image per call; rows: backbone alone, reference, project; then how far their anomaly maps differ.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _project import print_table


def reference_class():
    from defectops.anomaly.memory import PatchMemory

    class Reference(PatchMemory):
        """The search as exported before the product absorbed |m|^2 (the reference)."""

        def distances(self, x):
            f = self.features(x)
            n, c, h, w = f.shape
            q = f.permute(0, 2, 3, 1).reshape(-1, c)
            d2 = (q * q).sum(1, keepdim=True) - 2 * q @ self.bank.T + self.bank_sq[None]
            return d2.clamp_min(0).min(1).values.sqrt().reshape(n, h, w), f

    return Reference


class BackboneOnly(torch.nn.Module):
    def __init__(self, memory):
        super().__init__()
        self.memory = memory

    def forward(self, x):
        return self.memory.features(x).mean((2, 3))


def timed(path: Path, images: list[np.ndarray], calls: int) -> tuple[list[float], list[np.ndarray]]:
    from defectops.components.deploy.runtimes import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(path, threads=torch.get_num_threads())
    for blob in images[:5]:
        runner.run(blob)
    took, outputs = [], []
    for i in range(calls):
        blob = images[i % len(images)]
        started = time.perf_counter()
        out = runner.run(blob)
        took.append((time.perf_counter() - started) * 1000)
        outputs.append(out[min(1, len(out) - 1)])  # the anomaly map (the backbone graph: its pooled features)
    return took, outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches", type=int, default=8000, help="remembered patches (train.memory_patches)")
    parser.add_argument("--dims", type=int, default=64, help="values per patch (train.memory_dims)")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    from defectops.anomaly.memory import PatchMemory, export_onnx
    from defectops.components.train.anomaly import FEATURE_LEVELS
    from defectops.pretrained import build

    torch.manual_seed(0)
    extractor = build("efficientnet_lite0", FEATURE_LEVELS).eval()
    rng = np.random.default_rng(0)
    images = [rng.random((1, 3, args.imgsz, args.imgsz), dtype=np.float32) for _ in range(16)]
    with torch.no_grad():
        channels = PatchMemory(extractor, torch.zeros(1, 1), 1.0).features(torch.from_numpy(images[0])).shape[1]
    projection = torch.linalg.qr(torch.randn(channels, args.dims))[0].contiguous()
    bank = torch.randn(args.patches, args.dims)
    rows, maps = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, cls in (("reference: textbook q.q - 2 q.m + m.m, clamp, min", reference_class()),
                           ("project: m.m folded into the product, one min", PatchMemory)):
            memory = cls(extractor, bank, 1.0, projection).eval()
            if not rows:
                path = Path(tmp) / "backbone.onnx"
                torch.onnx.export(BackboneOnly(memory), torch.from_numpy(images[0]), str(path), opset_version=17,
                                  dynamo=False)
                took, _ = timed(path, images, args.calls)
                rows.append(("backbone and projection alone", *percentiles(took)))
            path = Path(tmp) / f"{cls.__name__}.onnx"
            export_onnx({"memory": memory, "imgsz": args.imgsz}, path)
            took, outputs = timed(path, images, args.calls)
            maps[label] = np.concatenate(outputs)
            rows.append((label, *percentiles(took)))
    print_table(rows, ("graph", "median ms", "p90 ms", "p99 ms"))
    reference, project = maps.values()
    print(f"\nratio reference/project median: {float(rows[1][1]) / float(rows[2][1]):.2f}x; anomaly maps differ by "
          f"at most {np.abs(reference - project).max() / np.abs(reference).max():.1e} of their largest value; "
          f"memory {args.patches} x {args.dims}, {args.imgsz} px, "
          f"{torch.get_num_threads()} threads, {args.calls} calls each, one image per call")


def percentiles(took: list[float]) -> tuple[str, str, str]:
    return tuple(f"{v:.1f}" for v in np.percentile(took, [50, 90, 99]))


if __name__ == "__main__":
    main()

"""Ultralytics' two NMS paths on CPU: its Python-loop fallback vs torchvision's kernel.

    .venv/bin/python bench/nms_path.py

Ultralytics uses torchvision's NMS only when torchvision is already imported; `configure_ultralytics`
imports it. An early model validated at conf 0.001 has thousands of candidate boxes per image;
this times both paths on such sets (random boxes, one run per size).
"""

from __future__ import annotations

import time

import torch
import torchvision
from _project import print_table
from ultralytics.utils.nms import TorchNMS


def main() -> None:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for n in (300, 1000, 3000, 6000):
        xy = torch.rand(n, 2, generator=generator) * 224
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=generator) * 40], 1)
        scores = torch.rand(n, generator=generator)
        started = time.perf_counter()
        TorchNMS.nms(boxes, scores, 0.7)
        loop = time.perf_counter() - started
        started = time.perf_counter()
        torchvision.ops.nms(boxes, scores, 0.7)
        kernel = time.perf_counter() - started
        rows.append((n, f"{loop * 1000:.0f}", f"{kernel * 1000:.1f}", f"{loop / kernel:.0f}x"))
    print_table(rows, ("boxes", "Ultralytics fallback (ms)", "torchvision (ms)", "ratio"))


if __name__ == "__main__":
    main()

"""Ultralytics model yamls around a named pretrained backbone (`train.backbone`, see defectops/backbones.py).

Ultralytics still trains, validates and exports the model: the backbone is one layer of its yaml
(`ImageNetBackbone`, its stride-8/16/32 maps picked by Ultralytics' own `Index` layers), so the trainer,
evaluation, ONNX export, the INT8 gate and the endpoint are the ones every other model goes through.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from defectops.backbones import RANDOM_SUFFIX, parse
from defectops.pretrained import ImageNetBackbone, ultralytics_layers

# The pretrained backbone's stem and stages up to stride 8 stay as ImageNet trained them: edge and blob filters
# any surface needs, and the most costly part of a CPU step to train (high resolution, depthwise convs): one
# training step measured 3.2x faster with them frozen (and channels-last), 256 px, batch 16, 2 cores.
FROZEN_PARTS = ("conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2")


def model_yaml(spec: str, task: str) -> dict:
    """The model definition for `task` on the backbone `spec` (e.g. 'efficientnet_lite0', or ':random')."""
    backbone, pretrained = parse(spec)
    p3, p4, p5 = backbone.channels[1:]
    if task == "classify":
        return {"nc": 2, "backbone": [[-1, 1, "ImageNetBackbone", [backbone.name, [4], pretrained]]],
                "head": [[0, 1, "Index", [p5, 0]], [-1, 1, "Classify", ["nc"]]]}
    if task not in ("detect", "segment"):
        raise ValueError(f"train.backbone: task '{task}' has no Ultralytics model on a backbone")
    # YOLOv8n's neck and head (its widths at scale n) on the backbone's stride-8/16/32 maps.
    output = ([[10, 13, 16], 1, "Segment", ["nc", 32, 64]] if task == "segment"
              else [[10, 13, 16], 1, "Detect", ["nc"]])
    return {"nc": 2, "backbone": [[-1, 1, "ImageNetBackbone", [backbone.name, [2, 3, 4], pretrained]]],
            "head": [[0, 1, "Index", [p3, 0]],  # 1: stride 8
                     [0, 1, "Index", [p4, 1]],  # 2: stride 16
                     [0, 1, "Index", [p5, 2]],  # 3: stride 32
                     [-1, 1, "SPPF", [256, 5]],  # 4
                     [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
                     [[-1, 2], 1, "Concat", [1]],
                     [-1, 1, "C2f", [128]],  # 7
                     [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
                     [[-1, 1], 1, "Concat", [1]],
                     [-1, 1, "C2f", [64]],  # 10: stride-8 output
                     [-1, 1, "Conv", [64, 3, 2]],
                     [[-1, 7], 1, "Concat", [1]],
                     [-1, 1, "C2f", [128]],  # 13: stride-16 output
                     [-1, 1, "Conv", [128, 3, 2]],
                     [[-1, 4], 1, "Concat", [1]],
                     [-1, 1, "C2f", [256]],  # 16: stride-32 output
                     output]}


def frozen_layers(net) -> list[str]:
    """Ultralytics' `freeze` entries (name prefixes below `model.`) for a model whose first layer is a pretrained
    ImageNetBackbone; nothing for any other model (a random-weights twin trains every layer)."""
    first = net.model[0]
    if not isinstance(first, ImageNetBackbone) or first.spec.endswith(RANDOM_SUFFIX):
        return []
    return [f"0.net.{part}" for part in FROZEN_PARTS]


def write_model_yaml(spec: str, task: str, folder: Path) -> Path:
    """The yaml file Ultralytics builds from (named after the backbone, for its logs and the run's params)."""
    ultralytics_layers()
    path = Path(folder) / f"{spec.replace(':', '-')}-{task}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(model_yaml(spec, task), sort_keys=False))
    return path

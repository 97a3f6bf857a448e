"""Networks on the named backbones of defectops/backbones.py, as torch modules and Ultralytics layers.

Model code: timm's `tf_efficientnet_lite*` (maintained, and exactly the network these weights were trained
as: TensorFlow's 'same' padding and BatchNorm eps 1e-3), with the packages' (lukemelas-style) keys mapped
onto it one to one (the same logits as the package's own 2020 model code). timm's `features_only` gives the
stride-4/8/16/32 maps that classifiers and the anomaly memory read.
"""

from __future__ import annotations

import timm
import torch

from defectops.backbones import DEFAULT, RANDOM_SUFFIX, BackboneError, parse, verified_weights


def timm_keys(state: dict[str, torch.Tensor], block_ids: list[tuple[int, int]],
              expansion: dict[int, bool]) -> dict[str, torch.Tensor]:
    """The packages' keys (`_blocks.<i>._expand_conv`, ...) as timm names them (`blocks.<stage>.<j>.conv_pw`).

    `block_ids`: timm's (stage, index) of each flat block, in order; `expansion`: whether block i expands
    (an inverted residual) or not (timm's depthwise-separable block, whose convs are named differently)."""
    renamed = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
               "_fc": "classifier"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            layer = (inverted if expansion[i] else separable)[parts[2]]
            stage, j = block_ids[i]
            out[".".join(["blocks", str(stage), str(j), layer, *parts[3:]])] = value
        else:
            out[".".join([renamed[parts[0]], *parts[1:]])] = value
    return out


def build(spec: str, out_indices: tuple[int, ...] = (1, 2, 3, 4)) -> torch.nn.Module:
    """timm's feature extractor for `spec`, with the package's ImageNet weights (hash-checked) unless ':random'.

    `out_indices` of timm's feature levels: 1..4 = strides 4, 8, 16, 32."""
    backbone, pretrained = parse(spec)
    net = timm.create_model(backbone.timm_name, pretrained=False, features_only=True, out_indices=out_indices)
    if not pretrained:
        return net
    state = torch.load(verified_weights(backbone), map_location="cpu", weights_only=True)
    block_ids = [(s, j) for s, stage in enumerate(net.blocks) for j in range(len(stage))]
    expansion = {int(k.split(".")[1]): True for k in state if k.startswith("_blocks.") and "_expand_conv" in k}
    mapped = timm_keys(state, block_ids, {i: expansion.get(i, False) for i in range(len(block_ids))})
    own = net.state_dict()
    missing = sorted(set(own) - set(mapped))
    wrong = sorted(k for k in own if k in mapped and mapped[k].shape != own[k].shape)
    if missing or wrong:
        raise BackboneError(f"{backbone.package}: its weights do not fit timm's {backbone.timm_name} "
                            f"(missing {missing[:3]}, shape differs {wrong[:3]})")
    net.load_state_dict({k: mapped[k] for k in own})
    return net


class ImageNetBackbone(torch.nn.Module):
    """An Ultralytics model layer: image in [0, 1] (Ultralytics' input) -> its maps at the chosen levels.

    Used in generated model yamls (`[-1, 1, ImageNetBackbone, [efficientnet_lite0, [2, 3, 4], True]]`, then
    `Index` layers pick the maps); built whenever Ultralytics builds the model from its yaml, so the weights are
    the package's before the first step, and a checkpoint (champion, resume) overwrites them as with any layer.
    `pretrained` False: random weights (Ultralytics' yaml parser cannot take the ':random' spelling)."""

    def __init__(self, name: str = DEFAULT, levels: tuple[int, ...] = (2, 3, 4), pretrained: bool = True):
        super().__init__()
        self.spec = name if pretrained else f"{name}{RANDOM_SUFFIX}"
        self.net = build(self.spec, tuple(levels))
        # The TF EfficientNet-Lite weights expect inputs in [-1, 1].
        self.register_buffer("shift", torch.tensor(0.5))
        self.register_buffer("scale", torch.tensor(2.0))

    @classmethod
    def of(cls, spec: str, levels: tuple[int, ...]) -> ImageNetBackbone:
        backbone, pretrained = parse(spec)
        return cls(backbone.name, levels, pretrained)

    def forward(self, x):
        if self.training:  # depthwise convs train ~1.4x faster channels-last on CPU (Ultralytics: CUDA only)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net((x - self.shift) * self.scale)


def ultralytics_layers() -> None:
    """Make ImageNetBackbone a name Ultralytics' yaml parser resolves (it looks layer names up in its own
    module's namespace)."""
    import ultralytics.nn.tasks as tasks

    tasks.ImageNetBackbone = ImageNetBackbone

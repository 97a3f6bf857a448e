"""Where a training starts: random weights from a yaml, a local checkpoint, or the registry champion.

A drift retraining starts from the champion (it already knows most of the job); a user with a
COCO- or ImageNet-pretrained `.pt` on disk starts from that. Ultralytics copies every tensor whose
shape fits into the new model; we also re-initialise the class outputs when the class list
differs, so a checkpoint whose six classes were other defects does not start out confidently
wrong. Nothing is downloaded: a path that does not exist is an error naming it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from defectops.dataset import sha256_file
from defectops.errors import DefectopsError
from defectops.registries import open_registry, open_registry_from

if TYPE_CHECKING:
    from defectops.registries import Registry

CHAMPION = "champion"


class WeightsError(DefectopsError, ValueError):
    """train.weights names something that cannot start this training; the message says what and why."""


@dataclass
class StartingPoint:
    path: Path | None  # None: random initialisation from the model yaml
    lineage: dict[str, str] = field(default_factory=dict)  # parent version / weights hash, for the registry
    note: str = ""


def champion_registry(params: Path, weights: str | None, model_name: str) -> Registry | None:
    """The registry 'champion' means (params.yaml's `registry.backend`), opened only when training starts there."""
    if weights != CHAMPION:
        return None

    return open_registry_from(params, model_name)


def resolve(weights: str | None, model_name: str, scratch: Path, registry: Registry | None = None) -> StartingPoint:
    """`weights` (None | 'champion' | a .pt path) -> the checkpoint to start from and its lineage.

    `registry`: where 'champion' is looked up (the CLI opens the one params.yaml names); default MLflow's."""
    if not weights:
        return StartingPoint(None, note="random initialisation")
    if weights == CHAMPION:
        registry = registry or open_registry(model_name)
        champion = registry.champion()
        if champion is None:  # the very first model of a line has nothing to start from
            return StartingPoint(None, note=f"'{model_name}' has no champion yet: random initialisation")
        path = registry.fetch_weights(champion, Path(tempfile.mkdtemp(dir=scratch)))  # sha256-checked
        return StartingPoint(path, {"parent_version": str(champion.version), "parent_model": model_name,
                                    "parent_weights_sha256": sha256_file(path)},
                             f"champion v{champion.version} of '{model_name}'")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"train.weights: {path} does not exist (expected a local .pt checkpoint, or "
                           f"'{CHAMPION}'; nothing is downloaded)")
    if path.suffix != ".pt":
        raise WeightsError(f"train.weights: {path} is not a PyTorch checkpoint (.pt); a model yaml goes in train.model")
    return StartingPoint(path.resolve(), {"parent_weights": str(path.resolve()),
                                          "parent_weights_sha256": sha256_file(path)}, f"weights {path}")


def _class_output_keys(model) -> list[str]:
    """State-dict keys of the layers that score classes: the last conv of each detection class
    branch, or a classifier's final linear layer."""
    head_index = len(model.model) - 1
    head = model.model[-1]
    keys = []
    for branch in ("cv3", "one2one_cv3"):
        for i, seq in enumerate(getattr(head, branch, None) or []):
            last = len(seq) - 1
            keys += [f"model.{head_index}.{branch}.{i}.{last}.{p}" for p, _ in seq[-1].named_parameters()]
    if hasattr(head, "linear"):
        keys += [f"model.{head_index}.linear.{p}" for p, _ in head.linear.named_parameters()]
    return keys


def load(start: StartingPoint, task: str, names: list[str]):
    """An Ultralytics model initialised from `start.path`, class outputs fresh when the classes differ."""
    from ultralytics import YOLO

    model = YOLO(str(start.path))
    if model.task != task:
        raise WeightsError(f"train.weights: {start.path} is a '{model.task}' model; train.task is '{task}'")
    old = list(dict(model.names).values())
    if old != list(names):
        reinitialise_class_outputs(model.model, len(names))
        start.note += f" (class outputs re-initialised: {old} -> {list(names)})"
    return model


def reinitialise_class_outputs(net, nc: int) -> None:
    """Overwrite the class-scoring layers with those of a freshly built model of the same architecture
    (Ultralytics' own initialisation), where their shape matches; a different class count gets fresh
    layers anyway when Ultralytics builds the model for the new dataset."""
    import torch
    from ultralytics.nn.modules.head import Segment
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, SegmentationModel

    head = net.model[-1]
    fresh_type = (ClassificationModel if hasattr(head, "linear") else
                  SegmentationModel if isinstance(head, Segment) else DetectionModel)
    fresh = fresh_type(net.yaml, nc=nc, verbose=False).state_dict()
    current = net.state_dict()
    with torch.no_grad():
        for key in _class_output_keys(net):
            if key in fresh and fresh[key].shape == current[key].shape:
                current[key].copy_(fresh[key])

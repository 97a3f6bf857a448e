"""The patch memory (torch): fitting, saving, loading, scoring and ONNX export. Serving needs none of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defectops.anomaly import ANOMALY, AnomalyError, anomaly_input, read_rgb

FEATURE_LAYERS = (4, 6)  # a YOLO backbone's stride-8 and stride-16 blocks: small pits and larger textures
CHECKPOINT_KEY = "defectops_anomaly"


class YoloFeatures(torch.nn.Module):
    """A YOLO model's first blocks as a feature extractor: image -> [stride-8 map, stride-16 map]."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        maps = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in FEATURE_LAYERS:
                maps.append(x)
        return maps


def backbone_layers(model, source: str) -> YoloFeatures:
    """The first blocks of a YOLO model (detect or classify) up to the deepest feature layer; every one must
    read only its predecessor, so the blocks run as a plain sequence."""
    layers = list(model.model)[:max(FEATURE_LAYERS) + 1]
    bad = [i for i, layer in enumerate(layers) if getattr(layer, "f", -1) != -1]
    if len(layers) <= max(FEATURE_LAYERS) or bad:
        raise AnomalyError(f"{source}: its first {max(FEATURE_LAYERS) + 1} blocks are not a plain backbone sequence "
                           "(expected a YOLOv8/YOLO11 detect or classify model)")
    return YoloFeatures(torch.nn.ModuleList(layers))


class PatchMemory(torch.nn.Module):
    """Image -> (calibrated score, anomaly map in units of a typical good image's score, pooled features).

    `extractor`: image -> feature maps, finest first (YoloFeatures, or an ImageNet backbone from
    defectops.pretrained); each patch is described by every map, upsampled to the finest. `projection`
    (channels x dims, optional): the good patches' principal directions, so the nearest-neighbour search, the
    serving cost, runs on fewer values per patch."""

    def __init__(self, extractor, bank, scale: float, projection=None):
        super().__init__()
        self.extractor = extractor
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        self.register_buffer("scale", torch.tensor(float(scale)))
        if projection is not None:  # absent otherwise: ONNX export traces one branch
            self.register_buffer("projection", projection)

    def features(self, x):
        maps = self.extractor(x)
        fine = maps[0]
        upsampled = [torch.nn.functional.interpolate(m, size=fine.shape[-2:], mode="bilinear", align_corners=False)
                     for m in maps[1:]]
        # Each patch described with its neighbours (PatchCore's local aggregation): robust to a pixel's shift.
        f = torch.nn.functional.avg_pool2d(torch.cat([fine, *upsampled], 1), 3, 1, 1)
        projection = getattr(self, "projection", None)  # also absent in memories saved before projections
        if projection is None:
            return f
        return torch.nn.functional.conv2d(f, projection.T[:, :, None, None])

    def distances(self, x):
        """Each patch's distance to its nearest remembered patch. |q - m|^2 = |q|^2 + (|m|^2 - 2 q.m): the bracket
        is one matrix product of [q, 1] with [-2m, |m|^2] (a constant of the exported graph), and |q|^2 is the same
        for a whole row, so it is added after the minimum. The patches x memory matrix is written once and read
        once; the textbook form passes over it four more times (bench/anomaly_search.py)."""
        f = self.features(x)
        n, c, h, w = f.shape
        q = f.permute(0, 2, 3, 1).reshape(-1, c)
        folded = torch.cat([-2 * self.bank, self.bank_sq[:, None]], 1).T
        nearest = (torch.cat([q, torch.ones_like(q[:, :1])], 1) @ folded).min(1).values
        d2 = nearest + (q * q).sum(1)
        return d2.clamp_min(0).sqrt().reshape(n, h, w), f

    def forward(self, x):
        d, f = self.distances(x)
        amap = d / self.scale
        raw = amap.flatten(1).max(1).values
        return raw / (raw + 1.0), amap, f.mean((2, 3))


@dataclass
class FitReport:
    bank_images: int
    calibration_images: int
    patches_seen: int
    bank_patches: int
    scale: float
    patch_dims: int  # values per remembered patch (after the projection, if any)


def _greedy_coreset(patches, size: int, seed: int):
    """k-centre greedy selection (PatchCore's coreset): keeps rare normal patterns a random sample would drop,
    each of which would otherwise be a false reject. Distances on a random projection, for speed."""
    if len(patches) <= size:
        return patches
    g = torch.Generator().manual_seed(seed)
    pool = patches[torch.randperm(len(patches), generator=g)[:max(size * 10, 50_000)]]
    projected = pool @ (torch.randn(pool.shape[1], 64, generator=g) / 8.0)
    norms = (projected * projected).sum(1)

    def squared_distance_to(i: int):  # |p|^2 - 2 p.c + |c|^2: a matrix-vector product, 30x faster than cdist
        return norms - 2 * projected @ projected[i] + norms[i]

    chosen = [0]
    nearest = squared_distance_to(0)
    for _ in range(size - 1):
        pick = int(torch.argmax(nearest))
        chosen.append(pick)
        nearest = torch.minimum(nearest, squared_distance_to(pick))
    return pool[chosen]


def principal_directions(patches, dims: int, seed: int):
    """The `dims` directions along which good patches vary most (PCA of a sample): distances between patches
    projected onto them keep most of what the full ones measure, at a fraction of the search's cost."""
    g = torch.Generator().manual_seed(seed)
    sample = patches[torch.randperm(len(patches), generator=g)[:100_000]].double()
    sample -= sample.mean(0)
    _, vectors = torch.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    return vectors[:, -dims:].flip(1).float().contiguous()


def batches(paths: list[Path], imgsz: int, batch: int):
    """Model inputs of consecutive images stacked while their shapes agree (parts of one aspect share one)."""
    pending: list[np.ndarray] = []
    for path in paths:
        x = anomaly_input(read_rgb(path), imgsz)
        if pending and (len(pending) == batch or x.shape != pending[0].shape):
            yield torch.from_numpy(np.stack(pending))
            pending = []
        pending.append(x)
    if pending:
        yield torch.from_numpy(np.stack(pending))


def fit(extractor: torch.nn.Module, good_images: list[Path], imgsz: int, bank_size: int, seed: int = 0,
        calibration_share: float = 0.2, batch: int = 16, dims: int | None = None):
    """A fitted PatchMemory over `extractor` (YoloFeatures or an ImageNet backbone) from defect-free images:
    most fill the memory, the rest calibrate the score. `dims`: project patches onto that many principal
    directions of the good patches (None, or at least their width: no projection)."""
    if len(good_images) < 5:
        raise AnomalyError(f"train.task anomaly needs defect-free training images: found {len(good_images)} "
                           "(expected at least 5; images with no boxes in the train split)")
    order = np.random.default_rng(seed).permutation(len(good_images))
    n_cal = max(1, int(round(len(good_images) * calibration_share)))
    calibration = [good_images[i] for i in order[:n_cal]]
    remembered = [good_images[i] for i in order[n_cal:]]
    memory = PatchMemory(extractor.float().eval(), torch.zeros(1, 1), 1.0)

    def run(paths, fn):
        with torch.no_grad():
            return torch.cat([fn(x) for x in batches(paths, imgsz, batch)])

    def patch_rows(x):
        f = memory.features(x)
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])

    patches = run(remembered, patch_rows)
    projection = None
    if dims is not None and dims < patches.shape[1]:
        projection = principal_directions(patches, dims, seed)
        patches = patches @ projection
    bank = _greedy_coreset(patches, bank_size, seed)
    memory = PatchMemory(memory.extractor, bank.contiguous(), 1.0, projection)
    raw = run(calibration, lambda x: memory.distances(x)[0].flatten(1).max(1).values)
    scale = float(torch.median(raw)) or 1.0
    memory.scale.fill_(scale)
    return memory, FitReport(len(remembered), len(calibration), len(patches), len(bank), scale, bank.shape[1])


def save(memory, path: Path, imgsz: int, source: str, report: FitReport) -> None:
    torch.save({CHECKPOINT_KEY: 1, "memory": memory, "imgsz": imgsz, "backbone": source,
                "fit": report.__dict__, "names": [ANOMALY]}, path)


def load(path: Path) -> dict | None:
    """The checkpoint's contents when it is an anomaly model (a pickle: load only hash-checked files); else None."""
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    return checkpoint if isinstance(checkpoint, dict) and checkpoint.get(CHECKPOINT_KEY) else None


class AnomalyModel:
    """What evaluation needs of a model, for an anomaly checkpoint: a task and per-image scores."""

    task = ANOMALY

    def __init__(self, checkpoint: dict):
        self.memory = checkpoint["memory"].eval()
        self.imgsz = int(checkpoint["imgsz"])
        self.names = dict(enumerate(checkpoint["names"]))

    def scores(self, images: list[Path], batch: int = 4) -> np.ndarray:
        with torch.no_grad():  # a few images at a time: each patch is compared with the whole memory
            out = [self.memory(x)[0].numpy() for x in batches(images, self.imgsz, batch)]
        return np.concatenate(out) if out else np.zeros(0)


def export_onnx(checkpoint: dict, target: Path) -> None:
    """One graph: image in, (score, anomaly map, pooled features) out, so the endpoint needs no torch. Height and
    width are free (an elongated part keeps its aspect: see anomaly_input)."""
    imgsz = int(checkpoint["imgsz"])
    torch.onnx.export(checkpoint["memory"].eval(), torch.zeros(1, 3, imgsz, imgsz), str(target),
                      input_names=["image"], output_names=["score", "anomaly_map", "embedding"], opset_version=17,
                      dynamo=False, dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "score": {0: "n"},
                                                  "anomaly_map": {0: "n", 1: "mh", 2: "mw"}, "embedding": {0: "n"}})

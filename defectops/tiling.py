"""Tiles for large images with small defects: cut with overlap, detect per tile, merge across seams.

A 12 px scratch on a 2,000 px frame is under 2 px when the whole frame is shrunk to 256, so the
model sees overlapping tiles at (near) native resolution instead. Training, evaluation, the
endpoint and its drift features use these same functions, so a decision means the same thing
everywhere. Our own ~100 lines rather than SAHI: the endpoint runs ONNX Runtime without torch or
SAHI's model wrappers, and the merge rule below (a box cut by a tile edge joins its other half)
is the part that matters and is tested directly.

Boxes here are (x1, y1, x2, y2) in pixels of the frame they belong to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

EDGE_PX = 2.0  # a box this close to a tile edge inside the image was cut by it


@dataclass(frozen=True)
class TileBox:
    class_id: int
    score: float
    box: tuple[float, float, float, float]
    cut: tuple[bool, bool, bool, bool] = (False, False, False, False)  # left, top, right, bottom


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]  # the last tile sits on the far edge: every pixel is covered


def windows(height: int, width: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tile windows (x1, y1, x2, y2) covering the image; neighbours share `overlap` of a tile."""
    step = max(1, int(round(tile * (1 - overlap))))
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in _starts(height, tile, step) for x in _starts(width, tile, step)]


def tiling_of(record: dict) -> tuple[int, float] | None:
    """(tile side, overlap) from a run.json, registry tags or model.json; None: the model sees whole images."""
    tile = record.get("tile")
    return (int(tile), float(record.get("tile_overlap") or 0.25)) if tile not in (None, "", "None") else None


def needs_tiling(height: int, width: int, tile: int | None) -> bool:
    return bool(tile) and max(height, width) > tile


def to_frame(boxes: Sequence[tuple[int, float, tuple[float, float, float, float]]],
             window: tuple[int, int, int, int], height: int, width: int) -> list[TileBox]:
    """Detections in a tile's pixels -> the frame's, each marked with the inner tile edges it touches."""
    x0, y0, x1, y1 = window
    inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)
    placed = []
    for class_id, score, (bx1, by1, bx2, by2) in boxes:
        fx1, fy1, fx2, fy2 = bx1 + x0, by1 + y0, bx2 + x0, by2 + y0
        cut = (inner[0] and fx1 - x0 <= EDGE_PX, inner[1] and fy1 - y0 <= EDGE_PX,
               inner[2] and x1 - fx2 <= EDGE_PX, inner[3] and y1 - fy2 <= EDGE_PX)
        placed.append(TileBox(int(class_id), float(score), (fx1, fy1, fx2, fy2), cut))
    return placed


def _overlap_1d(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of intervals [a1, a2] along one axis."""
    inter = np.clip(np.minimum(a2[:, None], a2[None]) - np.maximum(a1[:, None], a1[None]), 0, None)
    union = np.maximum(a2[:, None], a2[None]) - np.minimum(a1[:, None], a1[None])
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def same_defect(boxes: list[TileBox], iou: float) -> np.ndarray:
    """Pairwise: same class and overlapping, and either the same box seen by two tiles (IoU >= `iou`)
    or two pieces of one defect: one is cut by a tile edge and they line up across it."""
    xyxy = np.array([b.box for b in boxes], dtype=float).reshape(-1, 4)
    cls = np.array([b.class_id for b in boxes])
    cut = np.array([b.cut for b in boxes], dtype=bool).reshape(-1, 4)
    x1, y1, x2, y2 = xyxy.T
    iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
    ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (x2 - x1) * (y2 - y1)
    union = area[:, None] + area[None] - inter
    duplicate = inter >= iou * np.where(union > 0, union, np.inf)
    sideways = cut[:, [0, 2]].any(1)
    vertically = cut[:, [1, 3]].any(1)
    pieces = (((sideways[:, None] | sideways[None]) & (_overlap_1d(y1, y2) >= 0.5))
              | ((vertically[:, None] | vertically[None]) & (_overlap_1d(x1, x2) >= 0.5)))
    return (cls[:, None] == cls[None]) & (iw >= 0) & (ih >= 0) & (duplicate | pieces)


def merge(boxes: list[TileBox], iou: float = 0.5) -> list[TileBox]:
    """One box per defect: pieces and duplicates joined (union of their extents, best score)."""
    if not boxes:
        return []
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, label = connected_components(csr_matrix(same_defect(boxes, iou)), directed=False)
    merged = []
    for group in range(label.max() + 1):
        members = [b for b, g in zip(boxes, label) if g == group]
        xs1, ys1, xs2, ys2 = zip(*(m.box for m in members))
        merged.append(TileBox(members[0].class_id, max(m.score for m in members),
                              (min(xs1), min(ys1), max(xs2), max(ys2))))
    return sorted(merged, key=lambda b: -b.score)


Detections = list[tuple[int, float, tuple[float, float, float, float]]]


def detect_tiled(image: np.ndarray, tile: int, overlap: float,
                 detect: Callable[[list[np.ndarray]], list[Detections]], iou: float = 0.5) -> list[TileBox]:
    """Run `detect` (tiles -> per tile (class, score, box in the tile's pixels)) once on all of an
    image's tiles, so a model can batch them; returns the merged boxes in the image's pixels."""
    height, width = image.shape[:2]
    spans = windows(height, width, tile, overlap)
    found: list[TileBox] = []
    for window, boxes in zip(spans, detect([image[y0:y1, x0:x1] for x0, y0, x1, y1 in spans])):
        found += to_frame(boxes, window, height, width)
    return merge(found, iou)

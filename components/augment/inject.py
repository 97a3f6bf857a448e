"""Synthetic defect injection: real defect crops pasted onto defect-free images, labels updated.

A rare defect type with a handful of examples gets new training images in new places and on
new backgrounds, which oversampling the same few images cannot give. Each crop keeps a margin of
its own surroundings, whose brightness is matched to the background's (the defect keeps its own
contrast), and is blended in with a feathered edge, so the model learns the defect, not a pasted rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from defectops.dataset import Box

MARGIN = 0.25  # of the box size, kept around the defect as blending ground
MAX_BOX_SHARE = 0.5  # boxes covering more of the image than this are image-level labels, not crops


PixelBox = tuple[int, float, float, float, float]  # class id, x1 y1 x2 y2 in pixels
Rect = tuple[int, int, int, int]  # x1 y1 x2 y2, whole pixels


@dataclass(frozen=True)
class Crop:
    pixels: np.ndarray  # RGB uint8, the defect plus its margin
    box: tuple[float, float, float, float]  # the defect inside `pixels`, x1 y1 x2 y2
    relative_size: tuple[float, float]  # crop width/height as a share of its source image
    source: str
    # Other defects reaching into the crop, clipped to it: they are pasted too, so they stay labelled
    # (an unlabelled scratch in a pasted patch would teach the model that scratches are background).
    neighbours: tuple[PixelBox, ...] = ()
    mask: np.ndarray | None = None  # the source's canonical mask over `pixels`, when it has one


def crops_of(img: np.ndarray, boxes: list[Box], class_id: int, source: str,
             mask: np.ndarray | None = None) -> list[Crop]:
    """Every box of `class_id` in an image, with margin, as pasteable crops (with their piece of `mask`)."""
    h, w = img.shape[:2]
    found = []
    for i, b in enumerate(boxes):
        if b.cls != class_id or b.w * b.h > MAX_BOX_SHARE:
            continue
        x1, y1, x2, y2 = b.to_pixels(w, h)
        mx, my = MARGIN * (x2 - x1) + 2, MARGIN * (y2 - y1) + 2
        cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if cx2 - cx1 < 4 or cy2 - cy1 < 4:
            continue
        neighbours = []
        for j, other in enumerate(boxes):
            ox1, oy1, ox2, oy2 = other.to_pixels(w, h)
            ix1, iy1, ix2, iy2 = max(ox1, cx1), max(oy1, cy1), min(ox2, cx2), min(oy2, cy2)
            if j != i and ix2 - ix1 >= 1 and iy2 - iy1 >= 1:
                neighbours.append((other.cls, ix1 - cx1, iy1 - cy1, ix2 - cx1, iy2 - cy1))
        found.append(Crop(img[cy1:cy2, cx1:cx2].copy(), (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1),
                          ((cx2 - cx1) / w, (cy2 - cy1) / h), source, tuple(neighbours),
                          None if mask is None else mask[cy1:cy2, cx1:cx2].copy()))
    return found


def _feather(height: int, width: int) -> np.ndarray:
    """Alpha 1 in the middle, easing to 0 at the crop's edge (over its margin)."""
    ramp_y = np.minimum(np.arange(height), np.arange(height)[::-1]) / max(1.0, MARGIN * height / (1 + 2 * MARGIN))
    ramp_x = np.minimum(np.arange(width), np.arange(width)[::-1]) / max(1.0, MARGIN * width / (1 + 2 * MARGIN))
    return np.clip(np.minimum.outer(ramp_y, ramp_x), 0, 1)[..., None]


def paste(background: np.ndarray, crop: Crop, class_id: int, rng: np.random.Generator, scale: float = 1.0,
          avoid: tuple[Rect, ...] = (), tries: int = 20,
          mask: np.ndarray | None = None) -> tuple[np.ndarray, list[Box], Rect] | None:
    """The background with the crop blended in at a random place clear of `avoid`, `scale` x its size:
    (image, the new boxes — the defect first, then the neighbours that came with it — and the place
    taken). None when no place clear of `avoid` was found in `tries` draws. With `mask` (the background's
    canonical mask) and a crop that carries one, the crop's defect pixels are written into it, moved alike."""
    h, w = background.shape[:2]
    # Keep the defect's size relative to the image (backgrounds may have another resolution).
    cw = int(np.clip(round(crop.relative_size[0] * w * scale), 4, w))
    ch = int(np.clip(round(crop.relative_size[1] * h * scale), 4, h))
    for _ in range(tries):
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        if not any(left < r[2] and r[0] < left + cw and top < r[3] and r[1] < top + ch for r in avoid):
            break
    else:
        return None
    sx, sy = cw / crop.pixels.shape[1], ch / crop.pixels.shape[0]
    pixels = cv2.resize(crop.pixels, (cw, ch), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
    if flip_x:
        pixels = pixels[:, ::-1]
    if flip_y:
        pixels = pixels[::-1]

    def placed(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """A box in crop pixels -> the same box in the resized, flipped crop."""
        x1, y1, x2, y2 = x1 * sx, y1 * sy, x2 * sx, y2 * sy
        if flip_x:
            x1, x2 = cw - x2, cw - x1
        if flip_y:
            y1, y2 = ch - y2, ch - y1
        return x1, y1, x2, y2

    if mask is not None and crop.mask is not None:
        piece = cv2.resize(crop.mask, (cw, ch), interpolation=cv2.INTER_NEAREST)[::-1 if flip_y else 1,
                                                                                 ::-1 if flip_x else 1]
        target = mask[top:top + ch, left:left + cw]
        target[piece > 0] = piece[piece > 0]
    x1, y1, x2, y2 = placed(*crop.box)
    region = background[top:top + ch, left:left + cw].astype(np.float32)
    # Match brightness on the margin only: the defect keeps its contrast to its surroundings (a dark
    # patch stays darker than the steel around it), the surroundings blend into the new background.
    ring = np.ones((ch, cw), bool)
    ring[max(0, int(y1)):int(np.ceil(y2)), max(0, int(x1)):int(np.ceil(x2))] = False
    if ring.any():
        pixels += region[ring].mean(axis=0) - pixels[ring].mean(axis=0)
    alpha = _feather(ch, cw)
    out = background.copy()
    out[top:top + ch, left:left + cw] = np.clip(alpha * pixels + (1 - alpha) * region, 0, 255).astype(np.uint8)
    boxes = [Box.from_pixels(class_id, left + x1, top + y1, left + x2, top + y2, w, h)]
    for cls, *corners in crop.neighbours:
        nx1, ny1, nx2, ny2 = placed(*corners)
        boxes.append(Box.from_pixels(cls, left + nx1, top + ny1, left + nx2, top + ny2, w, h))
    return out, boxes, (left, top, left + cw, top + ch)


def inject(backgrounds: list[str], load, crops: list[Crop], class_id: int, n: int, rng: np.random.Generator,
           scale_jitter: float = 0.0, max_per_image: int = 1):
    """`n` new images, each a defect-free background (loaded by `load(name)`) with 1..`max_per_image`
    crops of the class pasted in, never overlapping (a paste covering another would leave a wrong
    label): more examples of the rare defect per image, at the same training cost per image.
    Each crop is resized by a factor in [1/(1+scale_jitter), 1+scale_jitter] (log-uniform): a handful
    of real defects then teach more than their own few sizes.

    Yields (background name, image, boxes, crop sources, mask: the pasted defects' pixels when the crops carry
    masks, else None)."""
    with_masks = any(c.mask is not None for c in crops)
    for _ in range(n):
        name = backgrounds[int(rng.integers(len(backgrounds)))]
        image, boxes, taken, sources = load(name), [], (), []
        mask = np.zeros(image.shape[:2], np.uint8) if with_masks else None
        for _ in range(int(rng.integers(1, max_per_image + 1))):
            crop = crops[int(rng.integers(len(crops)))]
            scale = float(np.exp(rng.uniform(-1, 1) * np.log1p(scale_jitter)))
            pasted = paste(image, crop, class_id, rng, scale, avoid=taken, mask=mask)
            if pasted is None:
                break
            image, new_boxes, place = pasted
            boxes, taken = boxes + new_boxes, (*taken, place)
            sources.append(crop.source)
        yield name, image, boxes, sources, mask


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))

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


@dataclass(frozen=True)
class Crop:
    pixels: np.ndarray  # RGB uint8, the defect plus its margin
    box: tuple[float, float, float, float]  # the defect inside `pixels`, x1 y1 x2 y2
    relative_size: tuple[float, float]  # crop width/height as a share of its source image
    source: str


def crops_of(img: np.ndarray, boxes: list[Box], class_id: int, source: str) -> list[Crop]:
    """Every box of `class_id` in an image, with margin, as pasteable crops."""
    h, w = img.shape[:2]
    found = []
    for b in boxes:
        if b.cls != class_id or b.w * b.h > MAX_BOX_SHARE:
            continue
        x1, y1, x2, y2 = b.to_pixels(w, h)
        mx, my = MARGIN * (x2 - x1) + 2, MARGIN * (y2 - y1) + 2
        cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if cx2 - cx1 < 4 or cy2 - cy1 < 4:
            continue
        found.append(Crop(img[cy1:cy2, cx1:cx2].copy(), (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1),
                          ((cx2 - cx1) / w, (cy2 - cy1) / h), source))
    return found


def _feather(height: int, width: int) -> np.ndarray:
    """Alpha 1 in the middle, easing to 0 at the crop's edge (over its margin)."""
    ramp_y = np.minimum(np.arange(height), np.arange(height)[::-1]) / max(1.0, MARGIN * height / (1 + 2 * MARGIN))
    ramp_x = np.minimum(np.arange(width), np.arange(width)[::-1]) / max(1.0, MARGIN * width / (1 + 2 * MARGIN))
    return np.clip(np.minimum.outer(ramp_y, ramp_x), 0, 1)[..., None]


def paste(background: np.ndarray, crop: Crop, class_id: int, rng: np.random.Generator,
          scale: float = 1.0) -> tuple[np.ndarray, Box]:
    """The background with the crop blended in at a random place, `scale` x its size; the defect's new box."""
    h, w = background.shape[:2]
    # Keep the defect's size relative to the image (backgrounds may have another resolution).
    cw = int(np.clip(round(crop.relative_size[0] * w * scale), 4, w))
    ch = int(np.clip(round(crop.relative_size[1] * h * scale), 4, h))
    sx, sy = cw / crop.pixels.shape[1], ch / crop.pixels.shape[0]
    pixels = cv2.resize(crop.pixels, (cw, ch), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x1, y1, x2, y2 = crop.box[0] * sx, crop.box[1] * sy, crop.box[2] * sx, crop.box[3] * sy
    if rng.random() < 0.5:
        pixels, (x1, x2) = pixels[:, ::-1], (cw - x2, cw - x1)
    if rng.random() < 0.5:
        pixels, (y1, y2) = pixels[::-1], (ch - y2, ch - y1)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
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
    return out, Box.from_pixels(class_id, left + x1, top + y1, left + x2, top + y2, w, h)


def inject(backgrounds: list[str], load, crops: list[Crop], class_id: int, n: int, rng: np.random.Generator,
           scale_jitter: float = 0.0):
    """`n` new images, each a defect-free background (loaded by `load(name)`) with one crop of the
    class pasted in (one, so a second paste can never cover the first and leave a wrong label).
    Each crop is resized by a factor in [1/(1+scale_jitter), 1+scale_jitter] (log-uniform): a handful
    of real defects then teach more than their own few sizes.

    Yields (background name, image, box, crop source)."""
    for _ in range(n):
        name = backgrounds[int(rng.integers(len(backgrounds)))]
        crop = crops[int(rng.integers(len(crops)))]
        scale = float(np.exp(rng.uniform(-1, 1) * np.log1p(scale_jitter)))
        image, box = paste(load(name), crop, class_id, rng, scale)
        yield name, image, box, crop.source


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))

"""Box-consistent transforms. Geometric ones move the labels; photometric ones never do."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from defectops.dataset import Box


def hflip(img: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, list[Box]]:
    return img[:, ::-1].copy(), [replace(b, cx=1 - b.cx) for b in boxes]


def vflip(img: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, list[Box]]:
    return img[::-1].copy(), [replace(b, cy=1 - b.cy) for b in boxes]


def jitter_photometric(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Lighting varies along a line: gain, contrast and sensor noise, all bounded by `strength`."""
    x = img.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean * rng.uniform(1 - strength, 1 + strength)
    x += rng.normal(0, 12 * strength, x.shape[:2])[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def random_variant(img: np.ndarray, boxes: list[Box], rng: np.random.Generator, photometric_strength: float,
                   mask: np.ndarray | None = None) -> tuple[np.ndarray, list[Box], list[str], np.ndarray | None]:
    """A new training example from an existing one (its pixel mask moved with it); returns the names of what
    was applied."""
    applied = []
    if rng.random() < 0.5:
        img, boxes = hflip(img, boxes)
        mask = None if mask is None else mask[:, ::-1].copy()
        applied.append("hflip")
    if rng.random() < 0.5:
        img, boxes = vflip(img, boxes)
        mask = None if mask is None else mask[::-1].copy()
        applied.append("vflip")
    if photometric_strength > 0:
        img = jitter_photometric(img, rng, photometric_strength)
        applied.append("photometric")
    return img, boxes, applied, mask

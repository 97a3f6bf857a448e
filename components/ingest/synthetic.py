"""Synthetic steel-surface images with drawn defects: the embedded default dataset.

Why synthetic: the default run must work offline on any machine, and images from real
lines are IP. The textures mimic rolled/brushed steel (streaks along the rolling direction,
grain noise, uneven lighting); defects are drawn the way they look on such strips.
Deterministic: image i depends only on (seed, i).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CLASSES = ["scratch", "pit", "inclusion", "patch"]
# Real lines see scratches far more often than patches; the imbalance is what augment balances.
CLASS_WEIGHTS = [0.40, 0.25, 0.22, 0.13]


def steel_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey rolled-steel background, float32 in 0..255."""
    base = rng.uniform(95, 165)
    # Streaks: noise stretched along the rolling (x) direction.
    streaks = rng.normal(0, 1, (size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=size / 6, sigmaY=0.8)
    streaks *= rng.uniform(6, 12) / (streaks.std() + 1e-6)
    grain = rng.normal(0, rng.uniform(3, 6), (size, size)).astype(np.float32)
    # Uneven illumination: a tilted plane plus a soft vignette.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * math.pi)
    plane = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) * rng.uniform(10, 35)
    vignette = -((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * rng.uniform(0, 40)
    img = base + streaks + grain + plane + vignette
    if rng.random() < 0.3:  # faint roll marks: periodic bands across the strip
        period = rng.uniform(size / 8, size / 3)
        img += np.sin(2 * math.pi * yy * size / period + rng.uniform(0, 6)).astype(np.float32) * rng.uniform(2, 5)
    return img.astype(np.float32)


def _clip_box(x1, y1, x2, y2, size, pad=2):
    return (max(0.0, x1 - pad), max(0.0, y1 - pad), min(size - 1.0, x2 + pad), min(size - 1.0, y2 + pad))


def draw_scratch(img, rng, size):
    length = rng.uniform(0.18, 0.6) * size
    angle = rng.uniform(0, math.pi)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    n = 5
    t = np.linspace(-0.5, 0.5, n)
    bend = rng.normal(0, 0.05 * length, n)
    xs = cx + t * length * math.cos(angle) - bend * math.sin(angle)
    ys = cy + t * length * math.sin(angle) + bend * math.cos(angle)
    pts = np.stack([xs, ys], 1).clip(1, size - 2)
    mask = np.zeros((size, size), np.float32)
    cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 1.0,
                  thickness=int(rng.integers(1, 3)) * 4, lineType=cv2.LINE_AA, shift=2)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    sign = -1 if rng.random() < 0.7 else 1  # most scratches are darker grooves
    img += sign * rng.uniform(35, 65) * mask
    return _clip_box(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max(), size)


def draw_pit(img, rng, size):
    cx, cy = rng.uniform(0.12, 0.88, 2) * size
    n = int(rng.integers(1, 5))
    spread = rng.uniform(0.02, 0.07) * size
    xs, ys = [], []
    for _ in range(n):
        px, py = cx + rng.normal(0, spread), cy + rng.normal(0, spread)
        r = rng.uniform(0.012, 0.03) * size
        mask = np.zeros((size, size), np.float32)
        cv2.circle(mask, (int(px * 4), int(py * 4)), max(4, int(r * 4)), 1.0, -1, cv2.LINE_AA, shift=2)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
        img -= rng.uniform(50, 85) * mask
        # Bright rim on the lit side: a pit is a hole, light catches its far edge.
        rim = np.roll(mask, shift=(1, 1), axis=(0, 1)) - mask
        img += 25 * np.clip(rim, 0, 1)
        xs += [px - r, px + r]
        ys += [py - r, py + r]
    return _clip_box(min(xs), min(ys), max(xs), max(ys), size)


def draw_inclusion(img, rng, size):
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    length = rng.uniform(0.08, 0.22) * size
    thick = rng.uniform(0.025, 0.06) * size
    mask = np.zeros((size, size), np.float32)
    angle = rng.normal(0, 12)  # inclusions are stretched along the rolling direction
    cv2.ellipse(mask, (int(cx * 4), int(cy * 4)), (int(length * 2), int(thick * 2)), angle, 0, 360, 1.0, -1,
                cv2.LINE_AA, shift=2)
    rough = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2)
    mask = np.clip(mask * (0.8 + 0.5 * rough), 0, 1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.2)
    img -= rng.uniform(40, 70) * mask
    ys, xs = np.nonzero(mask > 0.15)
    if len(xs) == 0:
        return _clip_box(cx - length / 2, cy - thick / 2, cx + length / 2, cy + thick / 2, size)
    return _clip_box(xs.min(), ys.min(), xs.max(), ys.max(), size)


def draw_patch(img, rng, size):
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.1, 0.22) * size
    mask = np.zeros((size, size), np.float32)
    angles = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    radii = radius * rng.uniform(0.6, 1.2, len(angles))
    poly = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1.0, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), radius / 5)
    sign = 1 if rng.random() < 0.5 else -1
    # A patch is a flattened area: the streak texture fades and the level shifts.
    local_mean = cv2.GaussianBlur(img, (0, 0), 6)
    img[:] = img * (1 - 0.6 * mask) + local_mean * 0.6 * mask + sign * rng.uniform(25, 40) * mask
    ys, xs = np.nonzero(mask > 0.3)
    return _clip_box(xs.min(), ys.min(), xs.max(), ys.max(), size)


DRAWERS = [draw_scratch, draw_pit, draw_inclusion, draw_patch]


def make_image(seed: int, index: int, size: int, defect_free: bool) -> tuple[np.ndarray, list[tuple]]:
    """One image (uint8, HxWx3) and its boxes as (class_id, x1, y1, x2, y2) in pixels."""
    rng = np.random.default_rng([seed, index])
    img = steel_texture(rng, size)
    boxes = []
    if not defect_free:
        for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
            cls = int(rng.choice(len(CLASSES), p=CLASS_WEIGHTS))
            boxes.append((cls, *DRAWERS[cls](img, rng, size)))
    grey = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2), boxes

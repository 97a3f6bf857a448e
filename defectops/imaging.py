"""Image geometry shared by training views, evaluation and the endpoint, so all three see the same pixels."""

from __future__ import annotations

import cv2
import numpy as np

PAD = 114  # Ultralytics' letterbox grey


def read_bgr(path) -> np.ndarray:
    """An image file as BGR uint8 (OpenCV's order, what Ultralytics takes); ValueError naming a file it cannot read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The whole image scaled into a size x size canvas, aspect kept, centred on grey: (canvas, scale, (left, top)).

    Nothing is cut: a classifier's centre crop would drop three quarters of a 1:4 part, defects included."""
    h, w = rgb.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))  # a very thin image keeps one pixel row
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else rgb
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas = np.full((size, size, *rgb.shape[2:]), PAD, np.uint8)
    canvas[top:top + nh, left:left + nw] = resized
    return canvas, scale, (left, top)

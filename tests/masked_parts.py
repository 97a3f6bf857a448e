"""Tiny generated parts with pixel masks in the magnetic tile layout (`<class>/Imgs/<name>.jpg + .png`): dark
pits and bright blisters of known area on a textured surface, for the segmentation task's tests."""

from pathlib import Path

import cv2
import numpy as np

CLASSES = {"pit": -90, "blister": 80}  # grey-level change inside the defect


def surface(rng: np.random.Generator, size: int) -> np.ndarray:
    grain = cv2.GaussianBlur(rng.normal(0, 12, (size, size)).astype(np.float32), (0, 0), 1.0)
    return np.clip(128 + grain + np.linspace(-15, 15, size)[None, :], 0, 255).astype(np.float32)


def draw_part(rng: np.random.Generator, size: int, defects: list[tuple[str, int, int, int]]
              ) -> tuple[np.ndarray, np.ndarray]:
    """(grey image, 0/255 mask) with a filled disc per (class, x, y, radius)."""
    image, mask = surface(rng, size), np.zeros((size, size), np.uint8)
    for cls, x, y, radius in defects:
        disc = np.zeros((size, size), np.uint8)
        cv2.circle(disc, (x, y), radius, 255, -1)
        image[disc > 0] += CLASSES[cls]
        mask |= disc
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_parts(root: Path, n_per_class: int = 24, n_good: int = 16, size: int = 96, seed: int = 0,
                radii: tuple[int, int] = (3, 16)) -> Path:
    """One defect per image, its radius from 3 to 16 px by default, so areas span 30 to 800 px."""
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        for i in range(n_per_class):
            radius = int(rng.integers(radii[0], radii[1] + 1))
            x, y = (int(v) for v in rng.integers(radius + 2, size - radius - 2, 2))
            image, mask = draw_part(rng, size, [(cls, x, y, radius)])
            save(root / cls / "Imgs" / f"{cls}{i}.jpg", image)
            save(root / cls / "Imgs" / f"{cls}{i}.png", mask)
    for i in range(n_good):
        save(root / "MT_Free" / "Imgs" / f"free{i}.jpg", draw_part(rng, size, [])[0])
    return root


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array, [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else [])

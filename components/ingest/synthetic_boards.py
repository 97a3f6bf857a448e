"""A PCB-style public set in YOLO layout with its own published split, generated: every defective board
sits in one split and the defect-free template of the same design in another, the way paired PCB sets
publish them. What the gate must tell apart from leakage: these are look-alikes (one design, other labels),
while a copy of one picture in two splits is not. Optionally with two such copies (a byte-identical file
and a re-encoded JPEG) to see that those still block. Deterministic: design d depends only on d.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

CLASSES = ["short"]
# (template's split, defective board's split), cycled over the designs: 4 of 5 designs straddle two splits.
SPLIT_PAIRS = [("train", "test"), ("test", "train"), ("train", "val"), ("val", "train"), ("train", "train")]
# The copies `copies=True` adds, by the names they get in the source (what the gate must name).
COPIED, REENCODED = "test/images/copied_template.png", "val/images/reencoded_short.jpg"


def board(design: int, size: int = 96) -> np.ndarray:
    """One board design: tracks and pads on a seeded layout (every board of a design looks the same)."""
    rng = np.random.default_rng(design)
    pixels = np.full((size, size), 40, np.uint8)
    edge = size - 4
    for _ in range(10):
        x, y = (int(v) for v in rng.integers(4, edge - 4, 2))
        if rng.random() < 0.5:
            cv2.line(pixels, (x, 4), (x, edge), 170, 2)
        else:
            cv2.line(pixels, (4, y), (edge, y), 170, 2)
        cv2.circle(pixels, (x, y), 4, 230, -1)
    return cv2.GaussianBlur(pixels, (3, 3), 0)


def _write(root: Path, split: str, name: str, pixels: np.ndarray, label: str) -> None:
    image = root / split / "images" / name
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(image)
    text = root / split / "labels" / f"{Path(name).stem}.txt"
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text(label)


def write_paired_source(root: Path, designs: int = 20, copies: bool = False) -> Path:
    """Templates and their defective boards across a published split under `root` (YOLO layout, data.yaml)."""
    root = Path(root)
    for design in range(designs):
        template_split, defect_split = SPLIT_PAIRS[design % len(SPLIT_PAIRS)]
        pixels = board(design)
        _write(root, template_split, f"d{design:03d}_template.png", pixels, "")
        x, y = 30 + design % 40, 60
        cv2.circle(pixels, (x, y), 3, 255, -1)  # a short: a small blob on the same layout
        size = pixels.shape[0]
        _write(root, defect_split, f"d{design:03d}_short.png", pixels,
               f"0 {x / size:.4f} {y / size:.4f} {8 / size:.4f} {8 / size:.4f}\n")
    if copies:
        _add_copies(root)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train/images", "val": "val/images",
                                                    "test": "test/images", "names": CLASSES}))
    return root


def _add_copies(root: Path) -> None:
    """A byte-identical copy of a train template in test, and a train defect image re-encoded as JPEG in val
    (same picture, other bytes, other pixels), its labels with it."""
    shutil.copyfile(root / "train/images/d000_template.png", root / COPIED)
    (root / "test/labels/copied_template.txt").write_text("")
    with Image.open(root / "train/images/d001_short.png") as im:
        jpeg = io.BytesIO()
        im.save(jpeg, format="JPEG", quality=85)
    (root / REENCODED).write_bytes(jpeg.getvalue())
    shutil.copyfile(root / "train/labels/d001_short.txt", root / "val/labels/reencoded_short.txt")

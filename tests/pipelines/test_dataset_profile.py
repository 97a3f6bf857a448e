"""`defectops data profile`: counts per split and group, and defect sizes at the training size."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from defectops.dataset import Box, write_dataset_yaml, write_labels, write_manifest
from defectops.dataset_profile import choose_size


def _dataset(root):
    """512 px images; boxes whose shorter sides are 4, 40 and 80 px (2, 20, 40 px at imgsz 256)."""
    write_dataset_yaml(root, ["pit"])
    sides = {"train": [4, 40], "val": [80], "test": []}
    groups = {}
    for split, boxes in sides.items():
        for i in range(3):
            rel = f"images/{split}/{split}{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((512, 512), 90 + i, np.uint8)).save(root / rel)
            mine = boxes if i == 0 else []
            write_labels(root / "labels" / split / f"{split}{i}.txt",
                         [Box.from_pixels(0, 100, 100, 100 + s, 100 + 2 * s, 512, 512) for s in mine])
            groups[rel] = "part-a" if split == "train" else ""  # the three train images show one part
    write_manifest(root, groups)


def test_profile_counts_groups_and_warns_about_defects_too_small_at_the_training_size(tmp_path):
    _dataset(tmp_path / "d")
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "data", "profile", str(tmp_path / "d"),
                             "--imgsz", "256", "--json", "--png", str(tmp_path / "p.png")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["per_split"]["train"] == {"images": 3, "groups": 1, "pit": 1, "good": 2}
    assert report["per_split"]["val"]["groups"] == 3
    assert round(report["box_min_side_px"]["min"], 2) == 4 and round(report["box_min_side_at_imgsz"]["min"], 2) == 2
    assert report["small_box_share"] == 1 / 3  # the 2 px one of 2, 20 and 40 px
    assert "33% of boxes are under 8 px at imgsz 256" in report["warnings"][0]
    assert report["near_duplicate_groups"] == 1 and report["largest_group"] == 3
    assert (tmp_path / "p.png").stat().st_size > 10_000
    # train boxes of 4 and 40 px (median 22) on 512 px: 16 px needs 372 -> 384 (train.imgsz: auto)
    assert report["training_size"]["imgsz"] == 384 and report["training_size"]["tile"] is None
    at_2048 = subprocess.run([sys.executable, "-m", "defectops.cli", "data", "profile", str(tmp_path / "d"),
                              "--imgsz", "2048", "--png", str(tmp_path / "q.png")],
                             capture_output=True, text=True, timeout=300)
    assert at_2048.returncode == 0 and "warning" not in at_2048.stderr + at_2048.stdout  # 16 px at 2048: fine


def _sized(root, image_px: int, sides: list[int]):
    """Train images of `image_px` square, one box per image with these shorter sides (long side 2x)."""
    write_dataset_yaml(root, ["scratch"])
    for i, side in enumerate(sides):
        rel = f"images/train/t{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((image_px, image_px), np.uint8)).save(root / rel)
        write_labels(root / "labels" / "train" / f"t{i}.txt", [Box.from_pixels(0, 10, 10, 10 + side, 10 + 2 * side,
                                                                               image_px, image_px)])
    write_manifest(root)
    return root


@pytest.mark.parametrize("image_px,sides,cap,tile,expected", [
    (1024, [60, 64, 70], 640, True, (256, None)),     # 64 px defects: 16 px at 256
    (1024, [30, 32, 40], 640, True, (512, None)),     # 32 px: 16 px needs 512
    (1024, [6, 8, 12], 640, True, (640, 320)),        # 8 px would need 2048: tiles of 320 px shown at 640
    (1024, [6, 8, 12], 640, False, (640, None)),      # tiling off: the cap, and the defects stay small
    (200, [40, 45, 60], 640, True, (224, None)),      # NEU-DET-like: never below the images' own size ...
    (2000, [400, 500], 640, True, (256, None)),       # ... or 256 for large images with large defects
])
def test_imgsz_auto_keeps_the_median_defect_at_16_px(tmp_path, image_px, sides, cap, tile, expected):
    choice = choose_size(_sized(tmp_path / "d", image_px, sides), cap, tile=tile)
    assert (choice["imgsz"], choice["tile"]) == expected, choice["reason"]

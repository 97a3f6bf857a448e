"""`defectops data profile`: counts per split and group, and defect sizes at the training size."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from defectops.dataset import Box, write_dataset_yaml, write_labels, write_manifest


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
    at_2048 = subprocess.run([sys.executable, "-m", "defectops.cli", "data", "profile", str(tmp_path / "d"),
                              "--imgsz", "2048", "--png", str(tmp_path / "q.png")],
                             capture_output=True, text=True, timeout=300)
    assert at_2048.returncode == 0 and "warning" not in at_2048.stderr + at_2048.stdout  # 16 px at 2048: fine

"""Small defects on large frames: a fixed 256 px, `train.imgsz: auto`, and tiling, on one budget.

    .venv/bin/python bench/small_defects.py                      # 240 images of 1,024 px, 6 min per setting
    .venv/bin/python bench/small_defects.py --images 120 --minutes 2   # a quick look

Generates steel-like 1,024 px frames (35 % defect-free) with 1-3 pits or scratches whose boxes are
6-12 px, the size of wafer, PCB and hairline defects on camera frames. Each setting trains through
the train step for the same wall-clock budget and is scored by the evaluate step (which tiles when
the model was trained on tiles): image-level recall and precision at the recall-first threshold on
the test split, image-level AP, and box mAP50 on whole test images. One run; every row printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from _project import image_ap, print_table

SIZE = 1024
CLASSES = ["pit", "scratch"]


def draw_small_defect(img: np.ndarray, rng: np.random.Generator, class_id: int) -> tuple[float, ...]:
    """A dark pit (6-12 px across) or a short thin scratch (8-12 px long); returns its box (x1, y1, x2, y2)."""
    cx, cy = rng.uniform(40, SIZE - 40, 2)
    depth = rng.uniform(35, 60)
    if class_id == 0:
        r = rng.uniform(3, 6)
        mask = np.zeros_like(img)
        cv2.circle(mask, (int(cx), int(cy)), int(round(r)), 1.0, -1, cv2.LINE_AA)
        img -= cv2.GaussianBlur(mask, (0, 0), 0.8) * depth
        return cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1
    length, angle = rng.uniform(8, 12), rng.uniform(0, np.pi)
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    mask = np.zeros_like(img)
    cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1.0, 2, cv2.LINE_AA)
    img -= mask * depth
    return min(cx - dx, cx + dx) - 2, min(cy - dy, cy + dy) - 2, max(cx - dx, cx + dx) + 2, max(cy - dy, cy + dy) + 2


def generate(root: Path, n: int, seed: int = 0) -> None:
    from defectops.components.ingest.synthetic import steel_texture
    from defectops.dataset import Box, write_dataset_yaml, write_labels, write_manifest

    rng = np.random.default_rng(seed)
    write_dataset_yaml(root, CLASSES)
    for i in range(n):
        split = "train" if i % 20 < 14 else "val" if i % 20 < 17 else "test"
        img = steel_texture(rng, SIZE)
        boxes = []
        if rng.random() >= 0.35:
            for _ in range(rng.integers(1, 4)):
                class_id = int(rng.integers(0, 2))
                x1, y1, x2, y2 = draw_small_defect(img, rng, class_id)
                boxes.append(Box.from_pixels(class_id, x1, y1, x2, y2, SIZE, SIZE))
        path = root / "images" / split / f"frame{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        write_labels(root / "labels" / split / f"frame{i:04d}.txt", boxes)
    write_manifest(root)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per setting (wall clock)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-small-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset_profile import choose_size

    generate(work / "raw", args.images)
    print("imgsz auto would choose:", choose_size(work / "raw", TrainConfig().max_imgsz)["reason"], flush=True)
    settings = {"fixed 256 px": ("fixed", {"imgsz": 256, "tile": None}),
                "imgsz: auto (no tiling)": ("auto", {"imgsz": "auto", "tile": None}),
                "imgsz: auto, tile: auto (defaults)": ("tiled", {})}
    rows = []
    for name, (folder, extra) in settings.items():
        out = work / folder
        config = TrainConfig(epochs=1000, time_hours=args.minutes / 60, checkpoint_dir=work / "ck", **extra)
        trained = train(config, work / "raw", out)
        metrics = evaluate(EvaluateConfig(model_name="none"), out, work / "raw", work / f"eval-{out.name}")
        rows.append((name, trained["imgsz"], trained["tile"] or "-", trained["epochs"],
                     f"{metrics['test']['recall']:.3f}", f"{metrics['test']['precision']:.3f}",
                     f"{image_ap(work / f'eval-{out.name}'):.3f}", f"{metrics['test_map50']:.3f}"))
        print(rows[-1], flush=True)
    print(f"\n{args.images} frames of {SIZE} px, defects 6-12 px, {args.minutes:g} min of training each, "
          f"{os.cpu_count()} cores")
    print_table(rows, ("setting", "imgsz", "tile (px)", "epochs", "test recall @ threshold", "test precision",
                       "image AP", "box mAP50"))


if __name__ == "__main__":
    main()

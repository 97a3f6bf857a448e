"""Segmentation on the magnetic tile set: mask mAP50 and how exactly each defect's area is measured.

    .venv/bin/python bench/segment_tiles.py                # 30 min of training; with evaluation under 40
    .venv/bin/python bench/segment_tiles.py --minutes 10   # a shorter budget

The ingest step imports the tiles with their pixel masks (near-duplicate groups kept in one split), augment
rebalances the rare classes (masks moved with every new image), and `train.task: segment` (YOLOv8n-seg from its
yaml, params.yaml's other defaults) trains for the budget. The evaluate step then reports, on the test split:
box and mask mAP50, and for every true defect (a connected mask region) matched by a predicted outline at mask
IoU >= 0.5 at the recall-first threshold, the absolute error of the predicted area, from the mask and from the
box (what a detector's severity rule would use). One run; every number printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _project import print_table, scratch_work

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget")
    parser.add_argument("--imgsz", default="auto")
    args = parser.parse_args()
    work = scratch_work("defectops-segment-tiles-")
    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train

    started = time.perf_counter()
    ingested = ingest(IngestConfig(source="auto", path=SHARED / "magnetic-tile"), work / "raw")
    augment(AugmentConfig(), work / "raw", work / "aug")
    imgsz = args.imgsz if args.imgsz == "auto" else int(args.imgsz)
    config = TrainConfig(task="segment", epochs=1000, time_hours=args.minutes / 60, imgsz=imgsz,
                         checkpoint_dir=work / "ck")
    trained = train(config, work / "aug", work / "model")
    train_minutes = (time.perf_counter() - started) / 60
    m = evaluate(EvaluateConfig(model_name="bench-segment"), work / "model", work / "raw", work / "eval")
    total_minutes = (time.perf_counter() - started) / 60
    test = m["test"]

    def num(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"

    print_table([
        ("masks imported", ingested.get("masks")),
        ("epochs / imgsz", f"{trained['epochs']} / {trained['imgsz']}"),
        ("ingest + augment + train min", f"{train_minutes:.1f}"),
        ("total min (with evaluation)", f"{total_minutes:.1f}"),
        ("test mask mAP50", num(m["test_mask_map50"])),
        ("test mask mAP50-95", num(m["test_mask_map50_95"])),
        ("test box mAP50", num(m["test_map50"])),
        ("test defects (mask regions)", m["test_defects"]),
        ("measured at threshold (mask IoU >= 0.5)", m["test_defects_measured"]),
        ("area MAE px, mask", num(m["test_area_mae_px"], 1)),
        ("area mean relative error, mask", num(m["test_area_mape"])),
        ("area MAE px, box", num(m["test_box_area_mae_px"], 1)),
        ("area mean relative error, box", num(m["test_box_area_mape"])),
        ("image recall / precision at threshold", f"{test['recall']:.3f} / {test['precision']:.3f}"),
    ])
    print(f"\n{os.cpu_count()} cores; work dir {work}")
    (work / "bench.json").write_text(json.dumps({"train": trained, "evaluate": m}, default=str, indent=2))


if __name__ == "__main__":
    main()

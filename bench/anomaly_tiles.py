"""Label-free anomaly detection vs the supervised detector on the magnetic tile set, same split, same budget.

    .venv/bin/python bench/anomaly_tiles.py                       # both, 20 CPU-min for the detector
    .venv/bin/python bench/anomaly_tiles.py --backbone some.pt --anomaly-only   # features from a checkpoint

The anomaly model (`train.task: anomaly`) is fitted on the defect-free training images only; the detector
(`train.task: detect`, params.yaml's defaults) trains on every labelled training image for the budget. Both
are evaluated by the evaluate step on the test split the ingest step made (near-duplicate groups kept
together): image AUROC and AP, and at the recall-first threshold tuned on val for recall 0.95: test recall,
its one-sided 95 % Clopper-Pearson lower bound, the false-reject rate (good tiles rejected) and precision.
One run; every number printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _project import precision_at_recall, print_table, scratch_work

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def scored(eval_dir: Path) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from defectops.components.evaluate.threshold import recall_lower_bound

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    rows = [line.split(",") for line in (eval_dir / "per_image.csv").read_text().splitlines()[1:]]
    scores = np.array([float(r[2]) for r in rows if r[0] == "test"])
    truth = np.array([r[3] == "1" for r in rows if r[0] == "test"])
    test = metrics["test"]
    return {"auroc": roc_auc_score(truth, scores), "ap": average_precision_score(truth, scores),
            "recall": test["recall"], "lower": recall_lower_bound(test["tp"], test["tp"] + test["fn"]),
            "false_reject": test["fp"] / max(test["fp"] + test["tn"], 1), "precision": test["precision"],
            "p95": precision_at_recall(scores, truth, 0.95), "threshold": metrics["threshold"],
            "defective": int(truth.sum()), "good": int((~truth).sum()),
            # defective images the threshold was tuned on: val's, plus the unseen train ones for an anomaly memory
            "tuned_on": (metrics.get("calibration") or {}).get("defective_images")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0, help="the detector's wall-clock training budget")
    parser.add_argument("--backbone", default=None, help="train.weights for the anomaly model (default: random)")
    parser.add_argument("--imgsz", default="auto")
    parser.add_argument("--anomaly-only", action="store_true", help="skip the detector (e.g. to compare backbones)")
    args = parser.parse_args()
    work = scratch_work("defectops-anomaly-tiles-")
    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train

    raw = work / "raw"
    ingest(IngestConfig(source="auto", path=SHARED / "magnetic-tile"), raw)
    imgsz = args.imgsz if args.imgsz == "auto" else int(args.imgsz)
    rows, results = [], {}
    for name, config, data in (
            ("anomaly (good images only)", TrainConfig(task="anomaly", weights=args.backbone, imgsz=imgsz,
                                                       checkpoint_dir=work / "ck"), raw),
            ("detector (all labels)", TrainConfig(epochs=1000, time_hours=args.minutes / 60, imgsz=imgsz,
                                                  checkpoint_dir=work / "ck"), work / "aug")):
        if data != raw:
            if args.anomaly_only:
                break
            augment(AugmentConfig(), raw, data)
        started = time.perf_counter()
        trained = train(config, data, work / name[:7])
        minutes = (time.perf_counter() - started) / 60
        evaluate(EvaluateConfig(model_name=f"bench-{name[:7]}"), work / name[:7], raw, work / f"{name[:7]}-eval")
        r = results[name] = scored(work / f"{name[:7]}-eval")
        rows.append((name, f"{minutes:.1f}", trained["imgsz"], f"{r['auroc']:.3f}", f"{r['ap']:.3f}",
                     f"{r['recall']:.3f}", f"{r['lower']:.3f}", f"{r['false_reject']:.3f}", f"{r['precision']:.3f}",
                     "n/a" if r["p95"] is None else f"{r['p95']:.3f}"))
        print_table(rows, HEADER)
    first = next(iter(results.values()))
    print(f"\ntest split: {first['defective']} defective, {first['good']} good tiles; {os.cpu_count()} cores; "
          f"backbone {args.backbone or 'random weights (yolov8n.yaml)'}; work dir {work}")


HEADER = ("model", "train min", "imgsz", "test AUROC", "image AP", "recall @ thr", "CP lower 95%",
          "false-reject rate", "precision @ thr", "precision @ recall 0.95")

if __name__ == "__main__":
    main()

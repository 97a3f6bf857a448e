"""NEU-DET (real steel-surface defects) on CPU within a stated budget: detection and classification.

    .venv/bin/python bench/neu_det.py                      # 60 CPU-minutes: 45 detect + 15 classify
    .venv/bin/python bench/neu_det.py --budget-minutes 6   # a quick look

Imports ../shared/datasets/neu-det (Pascal VOC) with the ingest step, validates it, then trains
from scratch (no pretrained weights exist here) with the train step's wall-clock budget
(`train.time_hours`: Ultralytics fits epochs and LR schedule to it) and scores the test split
with the evaluate step. Prints detection mAP50 / mAP50-95, image-level accuracy over the 6
classes (from the classifier, and from the detector's best box), and seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _project import keep_or_remove, print_table

NEU_DET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "neu-det"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="total training budget")
    parser.add_argument("--detect-share", type=float, default=0.75, help="share of the budget for detection")
    parser.add_argument("--detect-imgsz", type=int, default=224)
    parser.add_argument("--classify-imgsz", type=int, default=128)
    parser.add_argument("--source", type=Path, default=NEU_DET)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-neu-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()

    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.components.validate.step import ValidateConfig, validate

    started = time.perf_counter()
    imported = ingest(IngestConfig(source="voc", path=args.source), work / "raw")
    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    validate(ValidateConfig(), work / "raw", work / "validate")
    validate_seconds = time.perf_counter() - started

    results = {}
    for task, share, imgsz, batch in (("detect", args.detect_share, args.detect_imgsz, 16),
                                      ("classify", 1 - args.detect_share, args.classify_imgsz, 32)):
        budget_hours = args.budget_minutes * share / 60
        config = TrainConfig(task=task, imgsz=imgsz, batch=batch, epochs=300, time_hours=budget_hours, workers=2,
                             checkpoint_dir=work / "checkpoints", experiment=f"neu-det-{task}")
        trained = train(config, work / "raw", work / task)
        evaluation = evaluate(EvaluateConfig(experiment=f"neu-det-{task}"), work / task, work / "raw",
                              work / f"eval-{task}")
        results[task] = {"train": trained, "eval": evaluation, "budget_minutes": budget_hours * 60}

    detect, classify = results["detect"], results["classify"]
    print(f"\nNEU-DET: {imported['images']} images, {imported['boxes']} boxes, {len(imported['classes'])} classes; "
          f"split {imported['per_split']}; CPU cores: {os.cpu_count()}\n")
    rows = [("import (VOC -> canonical)", f"{import_seconds:.1f} s"), ("validation", f"{validate_seconds:.1f} s")]
    for task, r in results.items():
        t = r["train"]
        rows.append((f"{task}: budget / epochs / s per epoch",
                     f"{r['budget_minutes']:.0f} min / {t['epochs']} / {t['seconds_per_epoch']:.1f} s"))
    rows += [("detection mAP50 (test)", f"{detect['eval']['test_map50']:.3f}"),
             ("detection mAP50-95 (test)", f"{detect['eval']['test_map50_95']:.3f}"),
             ("image-level accuracy, 6 classes, classifier (test)", f"{classify['eval']['test_accuracy']:.3f}"),
             ("image-level accuracy, 6 classes, detector's best box (test)", f"{detect['eval']['test_accuracy']:.3f}")]
    print_table(rows)
    (work / "summary.json").write_text(json.dumps(
        {task: {"train": r["train"], "eval": {k: r["eval"][k] for k in ("test_map50", "test_map50_95",
                                                                       "test_accuracy", "threshold")}}
         for task, r in results.items()}, indent=2, default=str))
    keep_or_remove(work, args.keep)


if __name__ == "__main__":
    main()

"""defectops with its default settings vs plain Ultralytics, same data, split, yaml, image size and CPU budget.

    .venv/bin/python bench/vs_plain.py                                 # NEU-DET then the magnetic tile set
    .venv/bin/python bench/vs_plain.py --neu-minutes 10 --tile-minutes 15   # the budgets (wall minutes each)

Plain Ultralytics is what a new user runs: `YOLO("yolov8n.yaml").train(data, imgsz, time=budget)` in its
own process, Ultralytics' own defaults (torch threads = cores - 1, no dataloader workers on CPU), on
the dataset as imported and split by the ingest step. defectops runs its steps with params.yaml's
defaults: augment, then train (every core, imgsz: auto) for the same wall-clock budget. On the tile
set, defectops may warm-start from its own NEU-DET model; that model's minutes are counted in its
tile budget. Both models are scored by the same code on the same test split: box mAP50 (Ultralytics'
validator), image-level AP, and image-level precision at the highest threshold keeping test recall at
0.95 and 0.97. One run; every number printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _project import precision_at_recall, print_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

PLAIN = """
import sys
from ultralytics import YOLO
data, imgsz, hours, project = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
model = YOLO("yolov8n.yaml")
model.train(data=data, imgsz=imgsz, time=hours, epochs=1000, project=project, name="plain", exist_ok=True, seed=0,
            deterministic=True)
print("BEST", model.trainer.best)
"""


def plain_ultralytics(data_yaml: Path, imgsz: int, minutes: float, work: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user's shell has it
    reply = subprocess.run([sys.executable, "-c", PLAIN, str(data_yaml), str(imgsz), str(minutes / 60),
                            str(work / "plain")], env=env, check=True, capture_output=True, text=True)
    return Path([line for line in reply.stdout.splitlines() if line.startswith("BEST")][-1].split(" ", 1)[1])


def score(weights: Path, dataset: Path, imgsz: int, tiles=None) -> dict:
    from sklearn.metrics import average_precision_score

    from defectops.components.evaluate.scoring import load_model, score_images
    from defectops.components.evaluate.step import EvaluateConfig, detection_metrics
    from defectops.dataset import label_path, read_labels, read_manifest, read_names

    model = load_model(weights)
    paths = [r["path"] for r in read_manifest(dataset) if r["split"] == "test"]
    truth = np.array([bool(read_labels(label_path(dataset, p))) for p in paths])
    _, scores = score_images(model, dataset, paths, imgsz, 16, "cpu", read_names(dataset), tiles)
    boxes = detection_metrics(model, dataset, imgsz, EvaluateConfig())
    return {"map50": boxes["test_map50"], "p95": precision_at_recall(scores, truth, 0.95),
            "p97": precision_at_recall(scores, truth, 0.97),
            "image_ap": None if truth.all() else float(average_precision_score(truth, scores)),
            "recall_at_p70": _recall_at_precision(scores, truth, 0.70)}


def _recall_at_precision(scores: np.ndarray, truth: np.ndarray, precision: float) -> float | None:
    if truth.all() or not truth.any():
        return None
    order = np.argsort(-scores)
    hits = np.cumsum(truth[order])
    ok = hits / np.arange(1, len(hits) + 1) >= precision
    return float(hits[ok].max() / truth.sum()) if ok.any() else 0.0


def run_dataset(name: str, source: Path, fmt: str, minutes: float, work: Path, warm_from: Path | None = None,
                warm_minutes: float = 0.0) -> list[tuple]:
    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset import build_ultralytics_view
    from defectops.tiling import tiling_of

    raw = work / name / "raw"
    ingest(IngestConfig(source=fmt, path=source), raw)
    augment(AugmentConfig(), raw, work / name / "augmented")
    ours_minutes = minutes - warm_minutes
    config = TrainConfig(epochs=1000, time_hours=ours_minutes / 60, checkpoint_dir=work / "ck", experiment=name,
                         weights=str(warm_from) if warm_from else None)
    started = time.perf_counter()
    trained = train(config, work / name / "augmented", work / name / "defectops")
    ours_seconds = time.perf_counter() - started
    run = json.loads((work / name / "defectops" / "run.json").read_text())
    ours = score(work / name / "defectops" / "weights" / "best.pt", raw, run["imgsz"], tiling_of(run))
    imgsz = run["imgsz"]  # plain trains at the size ours chose for the same data (its training set is augmented)

    started = time.perf_counter()
    best = plain_ultralytics(build_ultralytics_view(raw, work / name / "view"), imgsz, minutes, work / name)
    plain_seconds = time.perf_counter() - started
    plain = score(best, raw, imgsz)
    epochs_plain = sum(1 for _ in open(best.parents[1] / "results.csv")) - 1

    def fmt_(v):
        return "n/a" if v is None else f"{v:.3f}"

    budget = f"{minutes:g} min" + (f" ({warm_minutes:.1f} of them NEU-DET pretraining)" if warm_minutes else "")
    return [(name, "plain Ultralytics", budget, f"{epochs_plain} ({plain_seconds / 60:.1f} min)", imgsz,
             *(fmt_(plain[k]) for k in ("map50", "p95", "p97", "image_ap", "recall_at_p70"))),
            (name, "defectops defaults" + (" + warm start" if warm_from else ""), budget,
             f"{trained['epochs']} ({ours_seconds / 60:.1f} min)", run["imgsz"],
             *(fmt_(ours[k]) for k in ("map50", "p95", "p97", "image_ap", "recall_at_p70")))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--neu-minutes", type=float, default=10.0)
    parser.add_argument("--tile-minutes", type=float, default=15.0)
    parser.add_argument("--no-warm-start", action="store_true", help="tile set from random weights")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-vs-plain-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()
    from defectops.offline import configure_ultralytics

    configure_ultralytics()  # the plain process shares the pinned offline settings and the local font
    rows = run_dataset("neu-det", SHARED / "neu-det", "voc", args.neu_minutes, work)
    print_table(rows, HEADER)
    neu_model = work / "neu-det" / "defectops" / "weights" / "best.pt"
    rows += run_dataset("magnetic-tile", SHARED / "magnetic-tile", "auto",
                        args.tile_minutes + (0 if args.no_warm_start else args.neu_minutes), work,
                        warm_from=None if args.no_warm_start else neu_model,
                        warm_minutes=0 if args.no_warm_start else args.neu_minutes)
    print(f"\n{os.cpu_count()} cores; work dir {work}")
    print_table(rows, HEADER)


HEADER = ("dataset", "model", "budget", "epochs (wall)", "imgsz", "box mAP50", "precision @ recall 0.95",
          "precision @ recall 0.97", "image AP", "recall @ precision 0.70")

if __name__ == "__main__":
    main()

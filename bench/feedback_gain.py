"""What 50 inspector-answered images of the new lighting buy the next model, same retraining budget.

    .venv/bin/python bench/feedback_gain.py                      # 3 seeds, 2-min retrainings
    .venv/bin/python bench/feedback_gain.py --seeds 0 --retrain-minutes 0.5   # a quick look

A champion is trained on the synthetic default dataset. The lamp then changes (brighter, the demo's
`shift_lighting`). For each seed, 50 new parts under the new lamp go through the real loop: archived
and recorded as the endpoint would, answered by an inspector (simulated: the true boxes, through
`feedback.answers.answer`), exported by `feedback export` and merged by ingest's `extra_sources`. The
champion is then retrained twice with the same wall-clock budget and seed: on the base data alone (what
a drift retraining without the inspector loop does) and on base + feedback. Both are scored as the
line would see them: threshold from the evaluate step on the base validation split (recall-first), then
recall and precision at it, precision at recall 0.95 (threshold-free: the scrap the recall target costs)
and image-level AP, on the test split under the new lamp. Every seed is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _project import keep_or_remove, precision_at_recall, print_table
from PIL import Image


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def answered_feedback(work: Path, seed: int, n: int, size: int) -> Path:
    """n new shifted parts, recorded and archived like the endpoint does, answered, exported."""
    from defectops.components.ingest import synthetic
    from defectops.demo import shift_lighting
    from defectops.feedback.answers import answer
    from defectops.feedback.config import FeedbackConfig
    from defectops.feedback.export import export
    from defectops.records.archive import ImageArchive
    from defectops.records.store import DecisionStore

    store, archive = DecisionStore(work / f"decisions-{seed}.db"), ImageArchive(work / f"archive-{seed}")
    rng = np.random.default_rng(1000 + seed)
    truths, rows = [], []
    for i in range(n):
        pixels, boxes = synthetic.make_image(1000 + seed, i, size, defect_free=bool(rng.random() < 0.35))
        body = shift_lighting(png_bytes(pixels))
        sha = hashlib.sha256(body).hexdigest()
        rows.append({"time": datetime.now(UTC), "part_id": f"S{seed}-{i}", "model_name": "bench", "model_version": "1",
                     "role": "champion", "precision": "fp32", "decision": "review", "score": 0.1, "threshold": 0.2,
                     "boxes": [], "features": {}, "image_sha256": sha, "latency_ms": 1.0,
                     "image_uri": archive.store(sha, body, "PNG")})
        truths.append([{"class_name": synthetic.CLASSES[c], "box": [x1, y1, x2, y2]} for c, x1, y1, x2, y2 in boxes])
    for record_id, boxes in zip(store.record_many(rows), truths):
        answer(store, record_id, "bench.inspector", "defect" if boxes else "good", boxes)
    store.close()
    export(FeedbackConfig(records_url=str(work / f"decisions-{seed}.db")), work / f"feedback-{seed}", track=False)
    return work / f"feedback-{seed}"


def shifted_test(dataset: Path, target: Path) -> list[str]:
    """The test split as the new lamp shows it (same relative paths, same labels)."""
    import shutil

    from defectops.dataset import read_manifest
    from defectops.demo import shift_lighting

    shutil.copytree(dataset, target)
    paths = [r["path"] for r in read_manifest(dataset) if r["split"] == "test"]
    for rel in paths:
        (target / rel).write_bytes(shift_lighting((dataset / rel).read_bytes()))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--feedback", type=int, default=50, help="inspector-answered shifted images")
    parser.add_argument("--champion-epochs", type=int, default=20)
    parser.add_argument("--retrain-minutes", type=float, default=2.0, help="wall-clock budget of each retraining")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-feedback-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()

    from sklearn.metrics import average_precision_score

    from defectops.components.evaluate.scoring import load_model, score_images
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.evaluate.threshold import image_level_metrics
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.dataset import label_path, read_labels, read_names

    base = IngestConfig(n_images=args.images)
    ingest(base, work / "raw")
    paths = shifted_test(work / "raw", work / "shifted")
    truth = np.array([bool(read_labels(label_path(work / "raw", p))) for p in paths])

    def line_view(name: str, dataset: Path, **settings) -> dict:
        trained = train(TrainConfig(checkpoint_dir=work / "ckpt", experiment="feedback-gain", **settings), dataset,
                        work / name)
        threshold = evaluate(EvaluateConfig(experiment="feedback-gain", model_name="none"), work / name,
                             work / "raw", work / f"eval-{name}")["threshold"]  # the base val split: as deployed
        _, scores = score_images(load_model(work / name / "weights" / "best.pt"), work / "shifted", paths,
                                 trained["imgsz"], 16, "cpu", read_names(work / "raw"), None)
        m = image_level_metrics(scores, truth, threshold)
        result = {"epochs": trained["epochs"], "recall": m["recall"], "precision": m["precision"],
                  "ap": float(average_precision_score(truth, scores)), "threshold": threshold,
                  "p_at_r95": precision_at_recall(scores, truth, 0.95)}
        print(f"{name}: {result}", flush=True)
        return result

    champion = line_view("champion", work / "raw", epochs=args.champion_epochs)
    weights = str(work / "champion" / "weights" / "best.pt")
    rows = [("-", "champion (no retraining)", champion["epochs"], f"{champion['recall']:.3f}",
             f"{champion['precision']:.3f}", f"{champion['p_at_r95']:.3f}", f"{champion['ap']:.3f}")]
    budget = args.retrain_minutes / 60
    for seed in args.seeds:
        feedback = answered_feedback(work, seed, args.feedback, base.image_size)
        ingest(base.model_copy(update={"extra_sources": [feedback]}), work / f"raw-feedback-{seed}")
        plain = line_view(f"without-{seed}", work / "raw", weights=weights, seed=seed, epochs=1000, time_hours=budget)
        fed = line_view(f"with-{seed}", work / f"raw-feedback-{seed}", weights=weights, seed=seed, epochs=1000,
                        time_hours=budget)
        for label, r in (("retrained without feedback", plain), (f"retrained with {args.feedback} answered", fed)):
            rows.append((seed, label, r["epochs"], f"{r['recall']:.3f}", f"{r['precision']:.3f}",
                         f"{r['p_at_r95']:.3f}", f"{r['ap']:.3f}"))
    print(f"\n{args.images} base images (synthetic default), champion {args.champion_epochs} epochs; each retraining "
          f"{args.retrain_minutes:g} wall-clock min from the champion; scored on the lighting-shifted test split "
          f"({len(paths)} images, {int(truth.sum())} defective) at the threshold the evaluate step sets on the base "
          f"validation split. CPU cores: {os.cpu_count()}")
    print_table(rows, ("seed", "model", "epochs", "shifted-test recall", "precision", "precision at recall 0.95",
                       "image AP"))
    keep_or_remove(work, args.keep)


if __name__ == "__main__":
    main()

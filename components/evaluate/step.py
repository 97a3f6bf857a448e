"""Evaluate: tune the recall-first operating threshold on val, report on test."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field

from defectops.components.evaluate.evidence import false_negative_grid, model_card, per_class_recall, recall_lower_bound
from defectops.components.evaluate.gate import champion_on_split, compare
from defectops.components.evaluate.plots import plot_confusion_matrix, plot_pr_curves
from defectops.components.evaluate.threshold import image_level_metrics, pr_curve, tune_threshold
from defectops.config import StepConfig
from defectops.dataset import label_path, read_labels, read_manifest, read_names, ultralytics_view
from defectops.metrics import StepTimer, write_metrics
from defectops.tracking import configure_mlflow

SCORE_FLOOR = 0.001  # boxes below this are noise; an image with none scores 0


class EvaluateConfig(StepConfig):
    target_recall: float = Field(0.95, gt=0, le=1, description="Image-level recall the line requires.")
    val_recall_margin: float = Field(
        0.0, ge=0, lt=1,
        description="Tune on val for target + margin: a small val split's recall is itself uncertain, and the "
                    "highest threshold meeting exactly the target misses about (1 - target) of unseen defects.")
    batch: int = Field(16, ge=1)
    device: str = "cpu"
    experiment: str = "defectops"
    model_name: str = Field("defectops-detector", description="Registered model whose champion is the bar.")
    gate_margin: float = Field(0.0, ge=-1, le=1, description="How much worse than the champion (recall, "
                                                             "precision) still passes; negative demands gains.")


def class_scores(model, root: Path, paths: list[str], imgsz: int, batch: int, device: str,
                 n_classes: int) -> np.ndarray:
    """Best box confidence per image and class, shape (images, classes); 0 where nothing was found."""
    scores = np.zeros((len(paths), n_classes))
    for i in range(0, len(paths), batch):
        chunk = [str(root / p) for p in paths[i:i + batch]]
        results = model.predict(chunk, conf=SCORE_FLOOR, imgsz=imgsz, device=device, verbose=False)
        for j, result in enumerate(results):
            for cls, conf in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist()):
                if int(cls) < n_classes:
                    scores[i + j, int(cls)] = max(scores[i + j, int(cls)], conf)
    return scores


def image_scores(model, root: Path, paths: list[str], imgsz: int, batch: int, device: str) -> np.ndarray:
    """Best box confidence per image, any class (0 when the model finds nothing)."""
    per_class = class_scores(model, root, paths, imgsz, batch, device, len(model.names))
    return per_class.max(axis=1) if per_class.size else np.zeros(len(paths))


def run_gate(config: EvaluateConfig, dataset: Path, test_paths: list[str], test_truth: np.ndarray,
             challenger_test: dict) -> dict:
    """Score the registry champion on the same test images and compare at the operating points."""
    from ultralytics import YOLO

    def score(weights: Path, size: int) -> np.ndarray:
        return image_scores(YOLO(str(weights), task="detect"), dataset, test_paths, size, config.batch, config.device)

    champion = champion_on_split(config.model_name, score, test_truth, image_level_metrics)
    if champion is None:
        return {"passed": True, "champion_version": None, "reason": "no champion yet"}
    passed, reason = compare(challenger_test, champion["test"], config.gate_margin)
    return {"passed": passed, "champion_version": champion["version"], "champion": champion, "reason": reason,
            "margin": config.gate_margin}


def class_threshold(class_id: int, paths: dict, labels: dict, scores: dict, tuning_recall: float) -> dict:
    """Highest threshold on this class's own box score keeping its val recall; its test recall there."""
    def has(split):
        return np.array([any(b.cls == class_id for b in labels[split][p]) for p in paths[split]], dtype=bool)

    val_has, test_has = has("val"), has("test")
    if not val_has.any():
        return {"class_threshold": None, "test_recall_at_class_threshold": None}
    t = tune_threshold(scores["val"][:, class_id], val_has, tuning_recall)
    caught = (scores["test"][:, class_id] >= t) & test_has
    recall = float(caught.sum() / test_has.sum()) if test_has.any() else None
    return {"class_threshold": t, "test_recall_at_class_threshold": recall}


def evaluate(config: EvaluateConfig, model_dir: Path, dataset: Path, out: Path) -> dict:
    """Write metrics.json, threshold.json, per_image.csv and pr_curve.png under `out`."""
    import mlflow

    from defectops.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO

    timer = StepTimer()
    model_dir, dataset, out = Path(model_dir), Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_info = json.loads((model_dir / "run.json").read_text())
    imgsz = int(run_info["imgsz"])
    model = YOLO(str(model_dir / "weights" / "best.pt"), task="detect")
    rows = read_manifest(dataset)
    names = read_names(dataset)
    split_scores, split_truth, split_paths, split_class_scores, split_labels = {}, {}, {}, {}, {}
    for split in ("val", "test"):
        paths = [r["path"] for r in rows if r["split"] == split]
        split_paths[split] = paths
        split_labels[split] = {p: read_labels(label_path(dataset, p)) for p in paths}
        split_truth[split] = np.array([len(split_labels[split][p]) > 0 for p in paths])
        split_class_scores[split] = class_scores(model, dataset, paths, imgsz, config.batch, config.device, len(names))
        split_scores[split] = split_class_scores[split].max(axis=1)

    tuning_recall = min(1.0, config.target_recall + config.val_recall_margin)
    threshold = tune_threshold(split_scores["val"], split_truth["val"], tuning_recall)
    val_m = image_level_metrics(split_scores["val"], split_truth["val"], threshold)
    test_m = image_level_metrics(split_scores["test"], split_truth["test"], threshold)
    with ultralytics_view(dataset) as data_yaml, tempfile.TemporaryDirectory() as scratch:
        detection = model.val(data=str(data_yaml), split="test", imgsz=imgsz, batch=config.batch,
                              device=config.device, verbose=False, project=scratch, name="val",
                              # Ultralytics fills its confusion matrix only when plotting; the plots go to
                              # scratch (fonts are local, see offline.py) and we draw our own figure.
                              plots=True)
    missed = [p for p, s, t in zip(split_paths["test"], split_scores["test"], split_truth["test"])
              if t and s < threshold]
    gate = run_gate(config, dataset, split_paths["test"], split_truth["test"], test_m)
    test_labels = split_labels["test"]
    per_class = per_class_recall(split_paths["test"], split_scores["test"], test_labels, names, threshold)
    for class_id, row in enumerate(per_class):
        # A threshold of the class's own: what the line would use to trade this defect type separately.
        row.update(class_threshold(class_id, split_paths, split_labels, split_class_scores, tuning_recall))
    plot_confusion_matrix(detection.confusion_matrix.matrix, names, out / "confusion_matrix.png")
    (out / "per_class.json").write_text(json.dumps(per_class, indent=2) + "\n")
    false_negative_grid(dataset, missed, test_labels, names, out / "false_negatives.png")
    lower_bound = recall_lower_bound(val_m["tp"], val_m["tp"] + val_m["fn"])
    warning = None
    if recall_lower_bound(val_m["tp"] + val_m["fn"], val_m["tp"] + val_m["fn"]) < config.target_recall:
        warning = (f"the validation split has {val_m['tp'] + val_m['fn']} defective images: even catching all of "
                   f"them cannot show recall >= {config.target_recall} with 95 % confidence; add defective "
                   "validation images")

    curves = {s: pr_curve(split_scores[s], split_truth[s])[:2] for s in ("val", "test")}
    operating = {"val": (val_m["recall"], val_m["precision"]), "test": (test_m["recall"], test_m["precision"])}
    plot_pr_curves(curves, operating, threshold, config.target_recall, out / "pr_curve.png")
    with open(out / "per_image.csv", "w") as fh:
        fh.write("split,path,score,is_defect\n")
        for s in ("val", "test"):
            for p, sc, t in zip(split_paths[s], split_scores[s], split_truth[s]):
                fh.write(f"{s},{p},{sc:.6f},{int(t)}\n")
    (out / "threshold.json").write_text(json.dumps({
        "threshold": threshold, "target_recall": config.target_recall, "tuning_recall": tuning_recall,
        "class_thresholds": {r["class"]: r["class_threshold"] for r in per_class}}, indent=2) + "\n")
    metrics = {
        "threshold": threshold,
        "target_recall": config.target_recall,
        "tuning_recall": tuning_recall,
        "val": val_m,
        "test": test_m,
        "test_boxes": sum(len(b) for b in test_labels.values()),
        "test_map50": float(detection.box.map50),
        "test_map50_95": float(detection.box.map),
        "test_false_negatives": missed,
        "val_recall_lower_bound": lower_bound,
        "small_validation_warning": warning,
        "gate": gate,
        "confusion_matrix": {"labels": [*names, "background"], "rows_predicted_columns_true":
                             detection.confusion_matrix.matrix.astype(int).tolist()},
        "seconds": timer.seconds(),
    }
    write_metrics(out / "metrics.json", metrics)
    (out / "model_card.md").write_text(model_card(metrics, per_class, run_info))

    configure_mlflow(config.experiment)
    with mlflow.start_run(run_id=run_info["run_id"]):
        mlflow.log_metrics({"eval/threshold": threshold, "eval/test_recall": test_m["recall"],
                            "eval/test_precision": test_m["precision"], "eval/test_f1": test_m["f1"],
                            "eval/val_recall": val_m["recall"], "eval/test_map50": metrics["test_map50"],
                            "eval/test_map50_95": metrics["test_map50_95"]})
        for name in ("metrics.json", "threshold.json", "per_image.csv", "pr_curve.png", "per_class.json",
                     "false_negatives.png", "model_card.md", "confusion_matrix.png"):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")
    return metrics

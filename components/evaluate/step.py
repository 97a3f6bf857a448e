"""Evaluate: tune the recall-first operating threshold on val, report on test."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field

from defectops.anomaly import ANOMALY, training_images
from defectops.components.evaluate.evidence import false_negative_grid, model_card, per_class_recall
from defectops.components.evaluate.gate import champion_on_split, compare
from defectops.components.evaluate.plots import plot_confusion_matrix, plot_pr_curves
from defectops.components.evaluate.scoring import (
    classification_report,
    load_model,
    predicted_classes,
    score_images,
)
from defectops.components.evaluate.segmentation import area_errors
from defectops.components.evaluate.threshold import (
    evidence_warning,
    image_level_metrics,
    operating_threshold,
    pr_curve,
    recall_lower_bound,
    tune_threshold,
)
from defectops.components.evaluate.tiled import tiled_box_metrics
from defectops.config import StepConfig
from defectops.dataset import GOOD, image_class, label_path, read_labels, read_manifest, read_names, ultralytics_view
from defectops.metrics import StepTimer, write_metrics
from defectops.registries import Registry, open_registry
from defectops.tiling import tiling_of
from defectops.tracking import configure_mlflow


class EvaluateConfig(StepConfig):
    target_recall: float = Field(0.95, gt=0, le=1, description="Image-level recall the line requires.")
    val_recall_margin: float = Field(
        0.03, ge=0, lt=1,
        description="Catch at least target + margin of the calibration defects, whatever their number: past a "
                    "few hundred the lower-bound rule alone would let the point estimate sit at the target, "
                    "where unseen recall is a coin flip around it.")
    batch: int = Field(16, ge=1)
    device: str = "cpu"
    experiment: str = "defectops"
    model_name: str = Field("defectops-detector", description="Registered model whose champion is the bar.")
    gate_margin: float = Field(0.0, ge=-1, le=1, description="How much worse than the champion (recall, "
                                                             "precision) still passes; negative demands gains.")


def run_gate(config: EvaluateConfig, dataset: Path, test_paths: list[str], test_truth: np.ndarray,
             challenger_test: dict, registry: Registry) -> dict:
    """Score the registry champion on the same test images and compare at the operating points."""
    names = read_names(dataset)

    def score(weights: Path, size: int, tiles: tuple[int, float] | None) -> np.ndarray:
        return score_images(load_model(weights), dataset, test_paths, size, config.batch, config.device, names,
                            tiles)[1]

    champion = champion_on_split(registry, score, test_truth, image_level_metrics)
    if champion is None:
        return {"passed": True, "champion_version": None, "reason": "no champion yet"}
    passed, reason = compare(challenger_test, champion["test"], config.gate_margin)
    return {"passed": passed, "champion_version": champion["version"], "champion": champion, "reason": reason,
            "margin": config.gate_margin}


def class_threshold(class_id: int, paths: dict, labels: dict, scores: dict, tuning_recall: float) -> dict:
    """Highest threshold on this class's own box score keeping its val recall; its test recall there, and
    the share of test images without the class flagged for it there: a recall is only read with its false
    alarms (a threshold of 0, where a val image got no box of the class, flags every image)."""
    def has(split):
        return np.array([any(b.cls == class_id for b in labels[split][p]) for p in paths[split]], dtype=bool)

    val_has, test_has = has("val"), has("test")
    if not val_has.any():
        return {"class_threshold": None, "test_recall_at_class_threshold": None,
                "test_false_alarms_at_class_threshold": None}
    t = tune_threshold(scores["val"][:, class_id], val_has, tuning_recall)
    flagged = scores["test"][:, class_id] >= t
    recall = float((flagged & test_has).sum() / test_has.sum()) if test_has.any() else None
    false_alarms = float((flagged & ~test_has).sum() / (~test_has).sum()) if (~test_has).any() else None
    return {"class_threshold": t, "test_recall_at_class_threshold": recall,
            "test_false_alarms_at_class_threshold": false_alarms}


def detection_metrics(model, dataset: Path, imgsz: int, config: EvaluateConfig) -> dict:
    """Box-level mAP (a segmentation model: mask mAP too) and confusion matrix on the test split (Ultralytics'
    validator)."""
    segments = model.task == "segment"
    with ultralytics_view(dataset, segments) as data_yaml, tempfile.TemporaryDirectory() as scratch:
        result = model.val(data=str(data_yaml), split="test", imgsz=imgsz, batch=config.batch,
                           device=config.device, verbose=False, project=scratch, name="val",
                           # Ultralytics fills its confusion matrix only when plotting; the plots go to
                           # scratch (fonts are local, see offline.py) and we draw our own figure.
                           plots=True)
    masks = ({"test_mask_map50": float(result.seg.map50), "test_mask_map50_95": float(result.seg.map)}
             if segments else {})
    return {"test_map50": float(result.box.map50), "test_map50_95": float(result.box.map), **masks,
            "confusion_labels": [*read_names(dataset), "background"], "confusion": result.confusion_matrix.matrix}


def evaluate(config: EvaluateConfig, model_dir: Path, dataset: Path, out: Path,
             registry: Registry | None = None) -> dict:
    """Write metrics.json, threshold.json, per_image.csv and pr_curve.png under `out`."""
    import mlflow

    timer = StepTimer()
    model_dir, dataset, out = Path(model_dir), Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_info = json.loads((model_dir / "run.json").read_text())
    imgsz, tiles = int(run_info["imgsz"]), tiling_of(run_info)
    model = load_model(model_dir / "weights" / "best.pt")
    rows = read_manifest(dataset)
    names = read_names(dataset)
    split_scores, split_truth, split_paths, split_class_scores, split_labels = {}, {}, {}, {}, {}
    for split in ("val", "test"):
        paths = [r["path"] for r in rows if r["split"] == split]
        split_paths[split] = paths
        split_labels[split] = {p: read_labels(label_path(dataset, p)) for p in paths}
        split_truth[split] = np.array([len(split_labels[split][p]) > 0 for p in paths])
        split_class_scores[split], split_scores[split] = score_images(model, dataset, paths, imgsz, config.batch,
                                                                      config.device, names, tiles)

    tuning_recall = min(1.0, config.target_recall + config.val_recall_margin)
    # An anomaly memory never saw the train split's defective images; a supervised model learned from them all.
    unseen = training_images(dataset, defective=True) if model.task == ANOMALY else []
    unseen_scores = (score_images(model, dataset, unseen, imgsz, config.batch, config.device, names, tiles)[1]
                     if unseen else np.zeros(0))
    calibration_scores = np.concatenate([split_scores["val"], unseen_scores])
    calibration_truth = np.concatenate([split_truth["val"], np.ones(len(unseen), dtype=bool)])
    threshold = operating_threshold(calibration_scores, calibration_truth, tuning_recall, config.target_recall)
    calibration_m = image_level_metrics(calibration_scores, calibration_truth, threshold)
    val_m = image_level_metrics(split_scores["val"], split_truth["val"], threshold)
    test_m = image_level_metrics(split_scores["test"], split_truth["test"], threshold)
    test_labels = split_labels["test"]
    truth_classes = [image_class(test_labels[p], names) for p in split_paths["test"]]
    if model.task == ANOMALY:  # no defect type to call: the image-level call is anomaly or good
        classified = classification_report([ANOMALY if s >= threshold else GOOD for s in split_scores["test"]],
                                           [GOOD if t == GOOD else ANOMALY for t in truth_classes], [ANOMALY])
    else:
        classified = classification_report(
            predicted_classes(split_class_scores["test"], split_scores["test"], threshold, names), truth_classes,
            names)
    if model.task == "detect" and tiles:  # boxes merged across tiles on whole images; image-level confusion
        box_metrics = {**tiled_box_metrics(model, dataset, split_paths["test"], test_labels, names, imgsz, tiles,
                                           config.device),
                       "confusion_labels": classified["labels"], "confusion": classified["matrix"]}
    elif model.task in ("detect", "segment"):
        box_metrics = detection_metrics(model, dataset, imgsz, config)
        if model.task == "segment":  # how exactly it measures what severity rules grade
            box_metrics.update(area_errors(model, dataset, split_paths["test"], imgsz, threshold, config.device))
    else:  # a classifier or anomaly model has no boxes: its confusion matrix is the image-level one
        box_metrics = {"test_map50": None, "test_map50_95": None, "confusion_labels": classified["labels"],
                       "confusion": classified["matrix"]}
    missed = [p for p, s, t in zip(split_paths["test"], split_scores["test"], split_truth["test"])
              if t and s < threshold]
    gate = run_gate(config, dataset, split_paths["test"], split_truth["test"], test_m,
                    registry or open_registry(config.model_name))
    per_class = per_class_recall(split_paths["test"], split_scores["test"], test_labels, names, threshold)
    for class_id, row in enumerate(per_class):
        # A threshold of the class's own: what the line would use to trade this defect type separately.
        row.update(class_threshold(class_id, split_paths, split_labels, split_class_scores, tuning_recall))
    plot_confusion_matrix(box_metrics["confusion"], box_metrics["confusion_labels"], out / "confusion_matrix.png")
    (out / "per_class.json").write_text(json.dumps(per_class, indent=2) + "\n")
    false_negative_grid(dataset, missed, test_labels, names, out / "false_negatives.png")
    defective = calibration_m["tp"] + calibration_m["fn"]
    lower_bound = recall_lower_bound(calibration_m["tp"], defective)
    warning = evidence_warning(calibration_scores, calibration_truth, threshold, config.target_recall)

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
        "task": model.task,
        "test_map50": box_metrics["test_map50"],
        "test_map50_95": box_metrics["test_map50_95"],
        "test_accuracy": classified["accuracy"],
        **{k: v for k, v in box_metrics.items() if k.startswith(("test_mask", "test_area", "test_box_area",
                                                                  "test_defects"))},
        "test_false_negatives": missed,
        "val_recall_lower_bound": lower_bound,
        # What the threshold was tuned on: val, and for an anomaly memory also the train split's defective images,
        # which it never saw (it remembers good parts only): several times the evidence of val alone.
        "calibration": {"defective_images": defective, "unseen_train_defective_images": len(unseen),
                        "recall": calibration_m["recall"]},
        "small_validation_warning": warning,
        "gate": gate,
        "confusion_matrix": {"labels": box_metrics["confusion_labels"], "rows_predicted_columns_true":
                             np.asarray(box_metrics["confusion"]).astype(int).tolist()},
        "image_confusion_matrix": {"labels": classified["labels"],
                                   "rows_predicted_columns_true": classified["matrix"].tolist()},
        "seconds": timer.seconds(),
    }
    write_metrics(out / "metrics.json", metrics)
    (out / "model_card.md").write_text(model_card(metrics, per_class, run_info))

    configure_mlflow(config.experiment)
    with mlflow.start_run(run_id=run_info["run_id"]):
        logged = {"eval/threshold": threshold, "eval/test_recall": test_m["recall"],
                  "eval/test_precision": test_m["precision"], "eval/test_f1": test_m["f1"],
                  "eval/val_recall": val_m["recall"], "eval/test_accuracy": classified["accuracy"],
                  "eval/test_map50": metrics["test_map50"], "eval/test_map50_95": metrics["test_map50_95"],
                  "eval/test_mask_map50": metrics.get("test_mask_map50"),
                  "eval/test_area_mae_px": metrics.get("test_area_mae_px")}
        mlflow.log_metrics({k: v for k, v in logged.items() if v is not None})
        for name in ("metrics.json", "threshold.json", "per_image.csv", "pr_curve.png", "per_class.json",
                     "false_negatives.png", "model_card.md", "confusion_matrix.png"):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")
    return metrics

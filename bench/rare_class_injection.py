"""Does synthetic defect injection help a rare class? Two trainings, same budget, one difference.

    .venv/bin/python bench/rare_class_injection.py            # ~15 CPU-min
    .venv/bin/python bench/rare_class_injection.py --images 120 --epochs 2 --imgsz 64   # a quick look

The synthetic dataset is cut down so one class (default: patch) keeps only `--rare` training
images; val/test keep theirs. Augment then fills that class up to the others twice: once with
flipped/relit copies of its own few images only (inject_share 0), once with the default
augment settings, where half of them paste its real defects onto defect-free training images.
Same number of new images, same training settings and epochs. Prints the rare class's test
recall (image-level, at its own per-class threshold) and box AP50 both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _project import keep_or_remove, print_table


def cut_rare_class(dataset: Path, rare: str, keep: int) -> int:
    """Delete training images of `rare` beyond the first `keep` (in name order); rewrite the manifest."""
    from defectops.dataset import label_path, read_manifest, write_manifest

    train_rare = sorted(r["path"] for r in read_manifest(dataset)
                        if r["split"] == "train" and rare in r["classes"].split(";"))
    for rel in train_rare[keep:]:
        (dataset / rel).unlink()
        label_path(dataset, rel).unlink(missing_ok=True)
    write_manifest(dataset)
    return min(keep, len(train_rare))


def rare_class_scores(work: Path, name: str, rare: str, imgsz: int) -> dict:
    from defectops.components.evaluate.scoring import load_model
    from defectops.dataset import read_names, ultralytics_view

    per_class = json.loads((work / f"eval-{name}" / "per_class.json").read_text())
    row = next(r for r in per_class if r["class"] == rare)
    model = load_model(work / name / "weights" / "best.pt")
    with ultralytics_view(work / "validated") as data_yaml, tempfile.TemporaryDirectory() as scratch:
        result = model.val(data=str(data_yaml), split="test", imgsz=imgsz, batch=16, device="cpu", verbose=False,
                           project=scratch, name="val", plots=False)
    class_id = read_names(work / "validated").index(rare)
    ap50 = dict(zip(result.box.ap_class_index.tolist(), result.box.ap50.tolist())).get(class_id, 0.0)
    return {"test_images": row["images"], "recall_own_threshold": row["test_recall_at_class_threshold"],
            "recall_image_threshold": row["recall"], "ap50": ap50}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rare-class", default="patch")
    parser.add_argument("--rare", type=int, default=8, help="training images the rare class keeps (<= 10)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-inject-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()

    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.components.validate.step import ValidateConfig, validate

    ingest(IngestConfig(n_images=args.images), work / "raw")
    kept = cut_rare_class(work / "raw", args.rare_class, args.rare)
    validate(ValidateConfig(), work / "raw", work / "validate", work / "validated")
    results = {}
    for name, share in (("variants", 0.0), ("injection", AugmentConfig().inject_share)):
        augmented = augment(AugmentConfig(inject_share=share), work / "validated", work / f"aug-{name}")
        config = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, checkpoint_dir=work / "checkpoints",
                             experiment="rare-class")
        trained = train(config, work / f"aug-{name}", work / name)
        evaluate(EvaluateConfig(experiment="rare-class"), work / name, work / "validated", work / f"eval-{name}")
        results[name] = {**rare_class_scores(work, name, args.rare_class, args.imgsz),
                         "generated": augmented["generated_per_class"].get(args.rare_class, 0),
                         "injected": augmented["injected_per_class"].get(args.rare_class, 0),
                         "seconds": trained["seconds"]}

    rare = args.rare_class
    print(f"\nrare class '{rare}': {kept} training images; {results['variants']['test_images']} test images with "
          f"it; {args.epochs} epochs at {args.imgsz} px each way\n")
    rows = []
    for key, label in (("generated", f"new '{rare}' training images"), ("injected", "of which injected"),
                       ("recall_own_threshold", f"test recall of '{rare}' at its own threshold"),
                       ("recall_image_threshold", f"test recall of '{rare}' images at the line threshold"),
                       ("ap50", f"test box AP50 of '{rare}'"), ("seconds", "training seconds")):
        a, b = results["variants"][key], results["injection"][key]
        fmt = (lambda v: "-" if v is None else f"{v:.3f}") if isinstance(a, float) or a is None else str
        rows.append((label, fmt(a), fmt(b)))
    print_table(rows, ("measure", "variants only", "with injection (default)"))
    keep_or_remove(work, args.keep)

if __name__ == "__main__":
    main()

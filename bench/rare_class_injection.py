"""Does synthetic defect injection help a rare class? Paired trainings, same budget, one difference.

    .venv/bin/python bench/rare_class_injection.py            # 3 seeds x 2 trainings, ~50 CPU-min
    .venv/bin/python bench/rare_class_injection.py --images 160 --seeds 1 --epochs 2 --imgsz 64   # a quick look

For each seed, a synthetic dataset (its own ingest seed) is cut down so one class (default: patch)
keeps only `--rare` training images; val/test keep theirs, and the test split is large (40 % of the
images by default) so the rare class's recall is measured on dozens of images, not a handful.
Augment then fills that class up to the others twice: once with flipped/relit copies of its own
few images only (inject_share 0), once with the default augment settings, where half of them paste
its real defects onto defect-free training images. Same number of new images, same training seed,
settings and epochs. Prints, per seed and as mean (sd) with the paired difference, the rare class's
test box recall and AP50 (Ultralytics' validator, IoU 0.5) and its image-level recall at its own
per-class threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from _project import keep_or_remove, print_table

MEASURES = (("box_recall", "test box recall (IoU 0.5)"), ("ap50", "test box AP50"),
            ("recall_own_threshold", "test image recall at its own threshold"))


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


def rare_class_scores(run: Path, name: str, rare: str, imgsz: int) -> dict:
    """The rare class's box recall and AP50 on the test split, and its image recall at its own threshold."""
    from defectops.components.evaluate.scoring import load_model
    from defectops.dataset import read_names, ultralytics_view

    per_class = json.loads((run / f"eval-{name}" / "per_class.json").read_text())
    row = next(r for r in per_class if r["class"] == rare)
    model = load_model(run / name / "weights" / "best.pt")
    with ultralytics_view(run / "validated") as data_yaml, tempfile.TemporaryDirectory() as scratch:
        result = model.val(data=str(data_yaml), split="test", imgsz=imgsz, batch=16, device="cpu", verbose=False,
                           project=scratch, name="val", plots=False)
    class_id = read_names(run / "validated").index(rare)
    found = result.box.ap_class_index.tolist()
    _, box_recall, ap50, _ = result.box.class_result(found.index(class_id)) if class_id in found else (0, 0, 0, 0)
    return {"test_images": row["images"], "recall_own_threshold": row["test_recall_at_class_threshold"],
            "box_recall": float(box_recall), "ap50": float(ap50)}


def run_seed(work: Path, seed: int, args) -> tuple[int, dict]:
    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.components.validate.step import ValidateConfig, validate

    run = work / f"seed{seed}"
    train_share, val_share, test_share = args.split
    ingest(IngestConfig(n_images=args.images, seed=7 + seed,
                        split={"train": train_share, "val": val_share, "test": test_share}), run / "raw")
    kept = cut_rare_class(run / "raw", args.rare_class, args.rare)
    validate(ValidateConfig(), run / "raw", run / "validate", run / "validated")
    results = {}
    for name, share in (("variants", 0.0), ("injection", AugmentConfig().inject_share)):
        augmented = augment(AugmentConfig(seed=seed, inject_share=share), run / "validated", run / f"aug-{name}")
        config = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, seed=seed, checkpoint_dir=run / "checkpoints",
                             experiment="rare-class")
        trained = train(config, run / f"aug-{name}", run / name)
        evaluate(EvaluateConfig(experiment="rare-class", model_name=f"rare-class-{seed}-{name}"), run / name,
                 run / "validated", run / f"eval-{name}")
        results[name] = {**rare_class_scores(run, name, args.rare_class, args.imgsz),
                         "generated": augmented["generated_per_class"].get(args.rare_class, 0),
                         "injected": augmented["injected_per_class"].get(args.rare_class, 0),
                         "seconds": trained["seconds"]}
        print(f"seed {seed} {name}: {json.dumps(results[name])}", flush=True)
    return kept, results


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def mean_sd(values: list[float], signed: bool = False) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if signed else ''}.3f} ({sd:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--split", type=float, nargs=3, default=(0.45, 0.15, 0.40), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--rare-class", default="patch")
    parser.add_argument("--rare", type=int, default=8, help="training images the rare class keeps (<= 10)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-inject-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()

    per_seed = {seed: run_seed(work, seed, args) for seed in range(args.seeds)}
    rare = args.rare_class
    rows = []
    for seed, (kept, r) in per_seed.items():
        v, i = r["variants"], r["injection"]
        rows.append((seed, kept, v["test_images"], f"{v['generated']} / {i['generated']} ({i['injected']} pasted)",
                     *(f"{fmt(v[k])} → {fmt(i[k])}" for k, _ in MEASURES)))
    print(f"\nrare class '{rare}', {args.epochs} epochs at {args.imgsz} px per training; "
          "each cell: variants only → with injection (default)")
    print_table(rows, ("seed", f"train '{rare}'", f"test '{rare}' images", "new images", *(m for _, m in MEASURES)))
    summary = []
    for key, label in MEASURES:
        v = [r["variants"][key] for _, r in per_seed.values()]
        i = [r["injection"][key] for _, r in per_seed.values()]
        diff = [b - a for a, b in zip(v, i) if a is not None and b is not None]
        wins = sum(d > 0 for d in diff)
        summary.append((label, mean_sd(v), mean_sd(i), mean_sd(diff, signed=True), f"{wins}/{len(diff)}"))
    print(f"\nmean (sd) over {args.seeds} seeds")
    print_table(summary, ("measure", "variants only", "with injection", "paired difference", "seeds improved"))
    keep_or_remove(work, args.keep)


if __name__ == "__main__":
    main()

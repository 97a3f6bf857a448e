"""Does synthetic defect injection help a rare class? Paired trainings, same budget, one difference.

    .venv/bin/python bench/rare_class_injection.py            # 5 seeds x 2 trainings, ~1 h on 2 cores
    .venv/bin/python bench/rare_class_injection.py --rare 8   # the class less rare: copies alone do nearly as well
    .venv/bin/python bench/rare_class_injection.py --images 160 --seeds 1 --epochs 2 --imgsz 64   # a quick look
    .venv/bin/python bench/rare_class_injection.py --rescore /tmp/defectops-inject-XXXX   # a --keep run, re-measured

For each seed, a synthetic dataset (its own ingest seed) is cut down so one class (default: patch)
keeps only `--rare` training images; val/test keep theirs, and the test split is large (40 % of the
images by default) so the rare class's recall is measured on dozens of images, not a handful.
Augment then fills that class up to the others twice: once with flipped/relit copies of its own
few images only (inject_share 0), once with the default augment settings, where half of them paste
its real defects onto defect-free training images. Same number of new images, same training seed,
settings and epochs. Prints, per seed and as mean (sd) with the paired difference, the rare class's
image-level recall at the line's threshold (the one evaluate tunes and deploy serves: were the
images showing it stopped?), at a threshold of its own on its own box score, and its test box
recall and AP50 (Ultralytics' validator, IoU 0.5); then, pooled over seeds, the rare-class test
images stopped by one training and not the other, with McNemar's exact test on those pairs.
A class's own threshold is printed with the share of other test images it flags: where a val image
of the class got no box of it, that threshold falls to 0 and its recall of 1 means "flag everything".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
from pathlib import Path

from _project import keep_or_remove, print_table

LOWER_IS_BETTER = {"false_alarms_own_threshold"}  # every other measure: higher is better
MEASURES = (("recall_line_threshold", "test image recall at the line threshold"),
            ("recall_own_threshold", "test image recall at its own threshold"),
            ("false_alarms_own_threshold", "other test images flagged for it there"),
            ("box_recall", "test box recall (IoU 0.5)"), ("ap50", "test box AP50"))
ARMS = {"variants": {"inject_share": 0.0}, "injection": {}}  # augment settings over the defaults


def cut_rare_class(dataset: Path, rare: str, keep: int) -> None:
    """Delete training images of `rare` beyond the first `keep` (in name order); rewrite the manifest."""
    from defectops.dataset import label_path, read_manifest, write_manifest

    train_rare = sorted(r["path"] for r in read_manifest(dataset)
                        if r["split"] == "train" and rare in r["classes"].split(";"))
    for rel in train_rare[keep:]:
        (dataset / rel).unlink()
        label_path(dataset, rel).unlink(missing_ok=True)
    write_manifest(dataset)


def caught_at_line_threshold(run: Path, name: str, rare: str) -> dict[str, bool]:
    """Each test image showing `rare`: stopped at the threshold evaluate tuned for the line?"""
    from defectops.dataset import label_path, read_labels, read_names

    class_id = read_names(run / "validated").index(rare)
    threshold = json.loads((run / f"eval-{name}" / "metrics.json").read_text())["threshold"]
    with open(run / f"eval-{name}" / "per_image.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    return {r["path"]: float(r["score"]) >= threshold for r in rows
            if any(b.cls == class_id for b in read_labels(label_path(run / "validated", r["path"])))}


def arm_scores(run: Path, name: str, rare: str, imgsz: int) -> dict:
    """Everything measured of one training, from what it left on disk."""
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
    caught = caught_at_line_threshold(run, name, rare)
    augmented = json.loads((run / f"aug-{name}" / "augment_metrics.json").read_text())
    return {"test_images": row["images"], "recall_line_threshold": sum(caught.values()) / len(caught),
            "recall_own_threshold": row["test_recall_at_class_threshold"],
            "false_alarms_own_threshold": row.get("test_false_alarms_at_class_threshold"),
            "box_recall": float(box_recall), "ap50": float(ap50), "caught": caught,
            "kept": augmented["class_images_before"][rare],
            "generated": augmented["generated_per_class"].get(rare, 0),
            "injected": augmented["injected_per_class"].get(rare, 0)}


def run_seed(work: Path, seed: int, args) -> None:
    """Both trainings of one seed, on one cut-down dataset."""
    from defectops.components.augment.step import AugmentConfig, augment
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig, train
    from defectops.components.validate.step import ValidateConfig, validate

    run = work / f"seed{seed}"
    train_share, val_share, test_share = args.split
    ingest(IngestConfig(n_images=args.images, seed=7 + seed,
                        split={"train": train_share, "val": val_share, "test": test_share}), run / "raw")
    cut_rare_class(run / "raw", args.rare_class, args.rare)
    validate(ValidateConfig(), run / "raw", run / "validate", run / "validated")
    for name, overrides in ARMS.items():
        augment(AugmentConfig(seed=seed, **overrides), run / "validated", run / f"aug-{name}")
        config = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, seed=seed, checkpoint_dir=run / "checkpoints",
                             experiment="rare-class")
        train(config, run / f"aug-{name}", run / name)
        evaluate_arm(run, seed, name)


def evaluate_arm(run: Path, seed: int, name: str) -> None:
    from defectops.components.evaluate.step import EvaluateConfig, evaluate

    evaluate(EvaluateConfig(experiment="rare-class", model_name=f"rare-class-{seed}-{name}"), run / name,
             run / "validated", run / f"eval-{name}")


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
    parser.add_argument("--rare", type=int, default=4, help="training images the rare class keeps (<= 10)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="more seeds later: --first-seed 3 --seeds 2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--rescore", type=Path, help="measure the trainings a --keep run left there; train nothing")
    args = parser.parse_args()
    work = args.rescore or Path(tempfile.mkdtemp(prefix="defectops-inject-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.rescore:
        seeds = sorted(int(p.name[4:]) for p in work.glob("seed*"))
    results = {}
    for seed in seeds:
        if args.rescore:  # evaluate again: what it measures may have grown since the run
            for name in ARMS:
                evaluate_arm(work / f"seed{seed}", seed, name)
        else:
            run_seed(work, seed, args)
        results[seed] = {name: arm_scores(work / f"seed{seed}", name, args.rare_class, args.imgsz) for name in ARMS}
    report(results, args)
    if not args.rescore:
        keep_or_remove(work, args.keep)


def report(results: dict[int, dict], args) -> None:
    rare = args.rare_class
    rows = []
    for seed, r in results.items():
        v, i = r["variants"], r["injection"]
        rows.append((seed, v["kept"], v["test_images"], f"{v['generated']} / {i['generated']} ({i['injected']} pasted)",
                     *(f"{fmt(v[k])} → {fmt(i[k])}" for k, _ in MEASURES)))
    print(f"\nrare class '{rare}', {args.epochs} epochs at {args.imgsz} px per training; "
          "each cell: variants only → with injection (default)")
    print_table(rows, ("seed", f"train '{rare}'", f"test '{rare}' images", "new images", *(m for _, m in MEASURES)))
    summary = []
    for key, label in MEASURES:
        v = [r["variants"][key] for r in results.values()]
        i = [r["injection"][key] for r in results.values()]
        diff = [b - a for a, b in zip(v, i) if a is not None and b is not None]
        better = [-d for d in diff] if key in LOWER_IS_BETTER else diff
        wins, losses = sum(d > 0 for d in better), sum(d < 0 for d in better)
        summary.append((label, mean_sd(v), mean_sd(i), mean_sd(diff, signed=True), f"{wins} / {losses}"))
    print(f"\nmean (sd) over {len(results)} seeds")
    print_table(summary, ("measure", "variants only", "with injection", "paired difference",
                          "seeds better / worse"))
    # Paired per image: the same test images meet both trainings of a seed.
    only_injection = only_variants = total = caught_v = caught_i = 0
    for r in results.values():
        v, i = r["variants"]["caught"], r["injection"]["caught"]
        only_injection += sum(i[p] and not v[p] for p in v)
        only_variants += sum(v[p] and not i[p] for p in v)
        total, caught_v, caught_i = total + len(v), caught_v + sum(v.values()), caught_i + sum(i.values())
    from scipy.stats import binomtest

    discordant = only_injection + only_variants
    p_value = binomtest(only_injection, discordant, 0.5).pvalue if discordant else 1.0
    print(f"\nat the line threshold, pooled: {caught_v}/{total} '{rare}' test images stopped with variants only, "
          f"{caught_i}/{total} with injection; stopped only with injection: {only_injection}, only without: "
          f"{only_variants} (McNemar exact p = {p_value:.4f})")


if __name__ == "__main__":
    main()

"""HPO on the embedded default: does `defectops tune` find settings that beat the defaults?

    .venv/bin/python bench/hpo_synthetic.py              # params.yaml as shipped: 4 trials (~15 CPU-min)
    .venv/bin/python bench/hpo_synthetic.py --trials 2 --epochs 2 --images 60   # a quick look

Runs ingest + augment on the synthetic default in a fresh project copy, then the Optuna study
(trial 0 = the default train settings). Prints every trial's validation objective (precision at
the threshold keeping tune.target_recall, ties to the wider gap above the defect-free images),
its state and settings, the winner, and wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import time

from _project import copy_project, defectops, keep_or_remove, print_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=None, help="default: tune.trials in params.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: train.epochs)")
    parser.add_argument("--images", type=int, default=None, help="synthetic images (default: ingest.n_images)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    update = {"tune": {k: v for k, v in (("trials", args.trials), ("epochs_per_trial", args.epochs)) if v},
              "ingest": {"n_images": args.images} if args.images else {}}
    root = copy_project("defectops-hpo-", update)
    started = time.perf_counter()
    defectops(root, "ingest", "--out", "data/raw")
    defectops(root, "augment", "--dataset", "data/raw", "--out", "data/augmented")
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    defectops(root, "tune", "--dataset", "data/augmented", "--out", "models/tune")
    tuning = time.perf_counter() - started

    result = json.loads((root / "models/tune/metrics.json").read_text())
    with open(root / "models/tune/trials.csv") as fh:
        trials = list(csv.DictReader(fh))
    print(f"\nobjective: {result['objective']}\n")
    print("| trial | state | objective | settings |\n|---|---|---|---|")
    for t in trials:
        settings = ", ".join(f"{k[len('params_'):]}={float(v):.4g}" for k, v in t.items() if k.startswith("params_"))
        # A pruned trial's 'value' is its last per-epoch fitness, not the objective: not comparable.
        value = f"{float(t['value']):.4f}" if t["value"] and t["state"] == "COMPLETE" else "-"
        print(f"| {t['number']}{' (defaults)' if t['number'] == '0' else ''} | {t['state']} | {value} | {settings} |")
    print_table([("defaults' objective", f"{result['default_objective']:.4f}"),
                 (f"best objective (trial {result['best_trial']})", f"{result['best_objective']:.4f}"),
                 ("beats the defaults", result["beats_defaults"]),
                 ("trials completed / pruned", f"{result['completed']} / {result['pruned']}"),
                 ("data preparation", f"{prepared:.0f} s"), ("study wall time (2-core CPU)", f"{tuning:.0f} s")])
    keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()

"""Time the main job on the embedded default, then a no-op `dvc repro`, in a fresh copy of the repo.

    .venv/bin/python bench/main_job.py            # default params.yaml (about 10 min on 2 cores)
    .venv/bin/python bench/main_job.py --quick    # tiny config, under a minute

Prints the per-stage wall times, the test-split recall/precision at the tuned threshold, and the
time of a second `dvc repro` with nothing changed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _project import copy_project, keep_or_remove, print_table, project_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny dataset and 2 epochs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    root = copy_project("defectops-bench-", {"ingest": {"n_images": 40, "image_size": 64},
                                             "train": {"epochs": 2, "imgsz": 64, "batch": 8}} if args.quick else None)
    env = project_env()

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "defectops.cli", "demo"], cwd=root, env=env, check=True)
    main_job = time.perf_counter() - started

    started = time.perf_counter()
    noop = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, check=True,
                          capture_output=True, text=True)
    noop_seconds = time.perf_counter() - started
    skipped = noop.stdout.count("didn't change, skipping")

    evaluation = json.loads((root / "reports/evaluate/metrics.json").read_text())
    print_table([("main job wall time", f"{main_job:.0f} s"),
                 (f"test recall @ threshold {evaluation['threshold']:.4f}", f"{evaluation['test']['recall']:.3f}"),
                 ("test precision @ threshold", f"{evaluation['test']['precision']:.3f}"),
                 ("test mAP50", f"{evaluation['test_map50']:.3f}"),
                 ("no-op dvc repro", f"{noop_seconds:.1f} s ({skipped} stages skipped)")])
    keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()

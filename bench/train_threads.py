"""Seconds per training epoch on CPU: Ultralytics' own thread/worker choice vs the train step's default.

    .venv/bin/python bench/train_threads.py                # default dataset, 3 epochs per variant
    .venv/bin/python bench/train_threads.py --epochs 5 --rounds 2

Ultralytics on CPU uses cpu_count - 1 torch threads and 0 dataloader workers; the train step
(defectops.compute) uses every core and gives dataloader workers only the cores torch leaves.
Each variant trains in a fresh process on the same synthetic default dataset with the same
settings and epochs; with --rounds 2 the order is reversed in the second round so a busy
machine penalises all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _project import print_table

VARIANTS = {  # name: (threads, workers); None = the train step's default
    "Ultralytics' CPU default (cores - 1 threads, 0 workers)": ("ultralytics", 0),
    "train step default (every core; workers only on cores torch leaves: 0 here)": (None, 2),
}


def child(dataset: Path, out: Path, threads: str | None, workers: int, epochs: int) -> None:
    from defectops.components.train.step import TrainConfig, train
    from defectops.compute import cpu_cores

    count = max(1, cpu_cores() - 1) if threads == "ultralytics" else None
    metrics = train(TrainConfig(epochs=epochs, threads=count, workers=workers, checkpoint_dir=out / "ckpt"),
                    dataset, out / "model")
    print(json.dumps({"seconds_per_epoch": metrics["seconds_per_epoch"], "threads": count or cpu_cores()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, out, threads, workers, epochs = args.child
        return child(Path(dataset), Path(out), None if threads == "all" else threads, int(workers), int(epochs))

    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.compute import cpu_cores

    work = Path(tempfile.mkdtemp(prefix="defectops-threads-"))
    ingest(IngestConfig(n_images=args.images), work / "raw")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "DEFECTOPS_ARTIFACT_ROOT": (work / "mlartifacts").as_uri()}
    env.pop("OMP_NUM_THREADS", None)  # as a user's shell would have it
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
        for i, name in enumerate(order):
            threads, workers = VARIANTS[name]
            reply = subprocess.run([sys.executable, __file__, "--child", str(work / "raw"), str(work / f"run{i}"),
                                    threads or "all", str(workers), str(args.epochs)],
                                   env=env, check=True, capture_output=True, text=True)
            seconds[name].append(json.loads(reply.stdout.strip().splitlines()[-1])["seconds_per_epoch"])
            print(f"round {round_ + 1}: {name}: {seconds[name][-1]:.1f} s/epoch", flush=True)
    base = seconds[next(iter(VARIANTS))]
    rows = [(name, ", ".join(f"{s:.1f}" for s in values),
             ", ".join(f"{b / s:.2f}x" for b, s in zip(base, values))) for name, values in seconds.items()]
    print(f"\n{cpu_cores()} cores, {args.images} images, {args.epochs} epochs per run, {args.rounds} round(s)")
    print_table(rows, ("variant", "s/epoch (each round)", "speed-up vs Ultralytics' default"))


if __name__ == "__main__":
    main()

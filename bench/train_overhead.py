"""What the train step costs on top of a plain `yolo train` of the same data, settings and epochs.

    .venv/bin/python bench/train_overhead.py                 # default train settings, 10 epochs, 2 rounds
    .venv/bin/python bench/train_overhead.py --epochs 2 --images 60 --rounds 1   # a quick look

Both run as fresh processes (imports included) on the synthetic default dataset; rounds
alternate the order so a busy machine penalises both alike. The step adds: the dataset view,
lineage md5s, MLflow run + per-epoch metrics + artifacts, atomic checkpoint copies. Goal ≤ 5 %.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _project import print_table


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.train.step import TrainConfig
    from defectops.dataset import build_ultralytics_view
    from defectops.offline import configure_ultralytics

    configure_ultralytics()  # the plain run shares these pinned (offline) Ultralytics settings
    work = Path(tempfile.mkdtemp(prefix="defectops-overhead-"))
    ingest(IngestConfig(n_images=args.images), work / "raw")
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    settings = {**params["train"], "epochs": args.epochs}
    (work / "params.yaml").write_text(yaml.safe_dump({"train": settings}))
    c = TrainConfig.model_validate(settings)
    data_yaml = build_ultralytics_view(work / "raw", work / "plain-view")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "DEFECTOPS_ARTIFACT_ROOT": (work / "mlartifacts").as_uri()}
    bin_dir = Path(sys.executable).parent
    ours_cmd = [str(bin_dir / "defectops"), "train", "--dataset", "raw", "--out", "model", "--params", "params.yaml"]
    plain_cmd = [str(bin_dir / "yolo"), "train", f"model={c.model}", f"data={data_yaml}", f"epochs={c.epochs}",
                 f"imgsz={c.imgsz}", f"batch={c.batch}", f"device={c.device}", f"workers={c.workers}",
                 f"seed={c.seed}", f"lr0={c.lr0}", f"weight_decay={c.weight_decay}", f"mosaic={c.mosaic}",
                 f"hsv_v={c.hsv_v}", f"patience={c.patience}", f"cache={'ram' if c.cache else False}",
                 f"project={work / 'plain'}", "name=run", "exist_ok=True", "plots=False", "verbose=False",
                 "amp=False", "deterministic=True"]
    ours, plain = [], []
    for round_ in range(args.rounds):
        order = [("ours", ours_cmd, ours), ("plain", plain_cmd, plain)]
        for name, cmd, times in order if round_ % 2 == 0 else order[::-1]:
            times.append(timed(cmd, work, env))
            print(f"round {round_ + 1}: {name} {times[-1]:.1f} s", flush=True)
    # Best of N: interference from anything else on the machine only ever adds time.
    o, p = min(ours), min(plain)
    print(f"\n{args.images} synthetic images, {args.epochs} epochs, imgsz {c.imgsz}, {os.cpu_count()} CPU cores\n")
    print_table([(f"plain `yolo train` (best of {len(plain)})", f"{p:.1f} s"),
                 (f"`defectops train` (best of {len(ours)})", f"{o:.1f} s"),
                 ("overhead", f"{o - p:+.1f} s ({(o - p) / p:+.1%})")])
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

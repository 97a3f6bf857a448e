"""After a lighting shift, retraining from the champion vs from scratch: how many epochs it takes.

    .venv/bin/python bench/warm_start.py                     # 3 seeds, 20 epochs from scratch vs 7 warm
    .venv/bin/python bench/warm_start.py --seeds 0 --epochs 6   # a quick look

A champion is trained on the synthetic default dataset. The line's lighting then changes (every
image darker, lower contrast, lit from one side); for each seed the shifted data is trained on
once from random weights for `--epochs` and once from the champion for a third of them
(monitor.retrain.warm_start_epoch_share), and both are evaluated by the evaluate step on the
shifted test split: recall and precision at the recall-first threshold, image-level AP. Every
seed is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _project import image_ap, print_table
from PIL import Image


def shift_lighting(source: Path, target: Path) -> None:
    """A copy of the dataset as the new lighting shows it: darker, flatter, a gradient across the part."""
    from defectops.dataset import iter_images, write_manifest

    shutil.copytree(source, target)
    for _split, rel in iter_images(target):
        path = target / rel
        with Image.open(path) as im:
            mode, pixels = im.mode, np.asarray(im.convert("RGB"), dtype=np.float32)
        ramp = np.linspace(0.45, 0.85, pixels.shape[1], dtype=np.float32)[None, :, None]
        shifted = np.clip(pixels * ramp * 0.8 + 12, 0, 255).astype(np.uint8)
        Image.fromarray(shifted).convert(mode).save(path)
    write_manifest(target)  # new bytes, new sha256; splits and groups kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="from scratch (and the champion's)")
    parser.add_argument("--share", type=float, default=None, help="warm epochs / scratch epochs "
                                                                  "(default: monitor.retrain.warm_start_epoch_share)")
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-warm-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DEFECTOPS_ARTIFACT_ROOT"] = (work / "mlartifacts").as_uri()

    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.monitor.retrain import RetrainConfig
    from defectops.components.train.step import TrainConfig, train

    share = args.share or RetrainConfig().warm_start_epoch_share
    warm_epochs = max(1, round(args.epochs * share))
    ingest(IngestConfig(n_images=args.images), work / "raw")
    shift_lighting(work / "raw", work / "shifted")

    def run(name: str, dataset: Path, **settings) -> dict:
        config = TrainConfig(checkpoint_dir=work / "ckpt", experiment="warm-start", **settings)
        trained = train(config, dataset, work / name)
        metrics = evaluate(EvaluateConfig(experiment="warm-start", model_name="none"), work / name, dataset,
                           work / f"eval-{name}")
        result = {"epochs": trained["epochs"], "recall": metrics["test"]["recall"],
                  "precision": metrics["test"]["precision"], "ap": image_ap(work / f"eval-{name}")}
        print(f"{name}: {result}", flush=True)
        return result

    champion = run("champion", work / "raw", epochs=args.epochs)
    champion_shifted = evaluate(EvaluateConfig(experiment="warm-start", model_name="none"), work / "champion",
                                work / "shifted", work / "eval-champion-shifted")
    print(f"champion on shifted test: recall {champion_shifted['test']['recall']:.3f} precision "
          f"{champion_shifted['test']['precision']:.3f} AP {image_ap(work / 'eval-champion-shifted'):.3f}")
    rows = []
    for seed in args.seeds:
        scratch = run(f"scratch-{seed}", work / "shifted", epochs=args.epochs, seed=seed)
        warm = run(f"warm-{seed}", work / "shifted", epochs=warm_epochs, seed=seed,
                   weights=str(work / "champion" / "weights" / "best.pt"))
        reached = warm["recall"] >= scratch["recall"] and warm["ap"] >= scratch["ap"]
        rows += [(seed, "from scratch", scratch["epochs"], f"{scratch['recall']:.3f}", f"{scratch['precision']:.3f}",
                  f"{scratch['ap']:.3f}", ""),
                 (seed, "from champion", warm["epochs"], f"{warm['recall']:.3f}", f"{warm['precision']:.3f}",
                  f"{warm['ap']:.3f}", "yes" if reached else "no")]
    print(f"\nchampion: {args.epochs} epochs on the original lighting (test recall {champion['recall']:.3f}, "
          f"AP {champion['ap']:.3f}); on the shifted test: recall {champion_shifted['test']['recall']:.3f}, "
          f"precision {champion_shifted['test']['precision']:.3f}")
    print_table(rows, ("seed", "start", "epochs", "shifted-test recall", "precision", "image AP",
                       "warm reaches scratch (recall and AP)"))


if __name__ == "__main__":
    main()

"""Pretrained vs random init on the magnetic tiles: anomaly, classification, detection and segmentation, each beside
its random-init twin (and plain Ultralytics from its yaml), then each pretrained model served beside today's YOLOv8n.

    .venv/bin/python bench/pretrained.py                        # seed 0, 12 CPU-min per classifier
    .venv/bin/python bench/pretrained.py --seeds 0,1,2 --classify-minutes 20 --serve-seconds 10
    .venv/bin/python bench/pretrained.py --tasks detect --dataset neu-det --imgsz 224 --detect-minutes 50
    .venv/bin/python bench/pretrained.py --tasks detect,segment --detect-minutes 30 --segment-minutes 30

One ingest of ../shared/datasets/magnetic-tile (ingest's grouped split: near-duplicate groups kept together), then
per seed and task two trainings through the project's own train and evaluate steps that differ only in
`train.backbone`: `efficientnet_lite0` (ImageNet weights from the installed package, hash-checked) and
`efficientnet_lite0:random` (the same network from random weights). Anomaly fits on the defect-free training
tiles only; the classifier (good vs each defect type, letterboxed whole tiles) trains for the same wall-clock
budget; `--tasks detect` adds detectors (YOLOv8n's neck and head on the backbone, pretrained and random, beside
today's yolov8n.yaml), each for the same wall-clock budget, with test box mAP50; `--tasks segment` the same with
YOLOv8n's segmentation head (beside yolov8n-seg.yaml), with test mask mAP50 and the mean relative area error of
the defects it found (masks needed: the magnetic tiles have them). Evaluate tunes the
recall-first threshold on val (an anomaly memory: val + the defective training tiles it never saw; the column
says how many defective images); the test split reports image AUROC, recall at that threshold, the false-reject
rate (good tiles rejected) and precision, and precision at recall 0.95.
Serving: each pretrained model (seed 0) and a YOLOv8n detector from its yaml (one epoch: speed only) are
registered, approved, deployed by default settings (`precision: auto`: a detector's INT8 twin is served only when
the re-validation gate verifies it; "served as" says which, and why not) and served on loopback; flat-out images/s
and p50/p99 at 20 img/s, same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml
from _endpoint import served
from _project import print_table, scratch_work
from anomaly_tiles import SHARED, scored
from serve_load import drive

BACKBONES = ("efficientnet_lite0", "efficientnet_lite0:random")
PLAIN = {"detect": "yolov8n.yaml", "segment": "yolov8n-seg.yaml"}  # today's defaults, from their yaml (no backbone)
ROWS = {"anomaly": BACKBONES, "classify": BACKBONES, **{task: (*BACKBONES, yaml) for task, yaml in PLAIN.items()}}


def run(task: str, backbone: str, seed: int, args, work: Path, raw: Path) -> tuple[dict, dict, Path]:
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.train.step import TrainConfig, train
    from defectops.config import load_step_config

    name = f"{task}-{backbone.replace(':', '-')}-s{seed}"
    minutes = {"classify": args.classify_minutes, "detect": args.detect_minutes,
               "segment": args.segment_minutes}.get(task)
    budget = {"epochs": 1000, "time_hours": minutes / 60} if minutes else {}
    plain = backbone == PLAIN.get(task)
    config = TrainConfig(task=task, backbone=None if plain else backbone, imgsz=args.imgsz, seed=seed,
                         checkpoint_dir=work / "ck", model_name=f"bench-{name}", **budget)
    started = time.perf_counter()
    trained = train(config, raw, work / name)
    trained["minutes"] = (time.perf_counter() - started) / 60
    settings = load_step_config(EvaluateConfig, "evaluate", overrides={"model_name": f"bench-{name}"})  # params.yaml
    evaluate(settings, work / name, raw, work / f"{name}-eval")
    return trained, scored(work / f"{name}-eval"), work / name


def serve_row(label: str, model_dir: Path, work: Path, raw: Path, test: list[bytes], seconds: float) -> tuple:
    from defectops import registry
    from defectops.components.deploy.step import DeployConfig, deploy
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.register.step import RegisterConfig, register

    model_name = f"bench-served-{label.split()[0]}"
    evaluate(EvaluateConfig(model_name=model_name), model_dir, raw, work / f"{model_name}-eval")
    os.environ["DEFECTOPS_USER"] = "bench.trainer"
    version = register(RegisterConfig(model_name=model_name), model_dir, work / f"{model_name}-eval",
                       work / f"{model_name}-reg")["version"]
    registry.approve(model_name, version, "bench.approver", "pretrained bench", acknowledge=True)  # stand-in
    deploy_root = work / f"{model_name}-deploy"
    deployed = deploy(DeployConfig(model_name=model_name), raw, deploy_root)
    params = work / f"{model_name}-params.yaml"
    params.write_text(yaml.safe_dump({"serve": {"model_name": model_name, "deploy_root": str(deploy_root),
                                                "records_url": str(work / f"{model_name}.db"),
                                                "archive_root": str(work / f"{model_name}-archive")}}))
    with served(params, "bench-key") as url:
        flat = drive(url, "bench-key", test, 0, 8, seconds)
        done, took, latencies, errors = drive(url, "bench-key", test, 20, 8, seconds)
    p50, p99 = np.percentile(latencies, [50, 99])
    return (label, served_as(deployed), f"{flat[0] / flat[1]:.1f}", f"{done / took:.1f}", f"{p50:.1f}", f"{p99:.1f}",
            flat[3] + errors)


def served_as(deployed: dict) -> str:
    """The precision deployed, and for a refused variant what the gate measured (test recall and precision)."""
    refused = [(key, c) for key, c in deployed["variants"].items() if c["verdict"] == "refused"]
    if not refused:
        return deployed["precision"].upper()
    key, check = refused[0]
    why = check.get("error") or f"test recall {check['test_recall']:.3f}, precision {check['test_precision']:.3f}"
    return f"{deployed['precision'].upper()} ({key} refused: {why})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--tasks", default="anomaly,classify", help="any of anomaly, classify, detect, segment")
    parser.add_argument("--dataset", default="magnetic-tile", help="a folder of ../shared/datasets (auto-detected)")
    parser.add_argument("--detect-minutes", type=float, default=50.0, help="each detector's wall-clock budget")
    parser.add_argument("--segment-minutes", type=float, default=30.0, help="each segmenter's wall-clock budget")
    parser.add_argument("--classify-minutes", type=float, default=12.0, help="each classifier's wall-clock budget")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--serve-seconds", type=float, default=10.0, help="0 skips serving")
    parser.add_argument("--only", default="", help="rows whose task/backbone contains this text")
    args = parser.parse_args()
    work = scratch_work("defectops-pretrained-")
    os.environ["DEFECTOPS_AUDIT_LOG"] = str(work / "audit.jsonl")
    from defectops.backbones import BACKBONES, verified_weights
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.dataset import read_manifest

    raw = work / "raw"
    ingest(IngestConfig(source="auto", path=SHARED / args.dataset), raw)
    rows, kept = [], {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task, backbone in [(t, b) for t in args.tasks.split(",") for b in ROWS[t]]:
            if args.only not in f"{task} {backbone}":
                continue
            trained, r, model_dir = run(task, backbone, seed, args, work, raw)
            kept.setdefault((task, backbone), model_dir)
            what = "fit" if task == "anomaly" else f"{trained.get('epochs')} epochs"
            evaluated = json.loads((work / f"{model_dir.name}-eval" / "metrics.json").read_text())
            rows.append((task, backbone, seed, f"{trained['minutes']:.1f} ({what})",
                         *(optional(evaluated.get(k)) for k in ("test_map50", "test_mask_map50", "test_area_mape")),
                         f"{r['auroc']:.3f}",
                         str(r["tuned_on"]), f"{r['recall']:.3f}", f"{r['lower']:.3f}", f"{r['false_reject']:.3f}",
                         f"{r['precision']:.3f}", "n/a" if r["p95"] is None else f"{r['p95']:.3f}"))
            print_table(rows, HEADER)
    lite0 = BACKBONES["efficientnet_lite0"]
    print(f"\nweights: {lite0.package} {verified_weights(lite0).name} sha256 {lite0.sha256} ({lite0.licence}); "
          f"{r['defective']} defective + {r['good']} good test images of {args.dataset}; imgsz {args.imgsz}; "
          f"{os.cpu_count()} cores")
    if args.serve_seconds <= 0:
        return
    from defectops.components.train.step import TrainConfig, train

    train(TrainConfig(epochs=1, imgsz=args.imgsz, checkpoint_dir=work / "ck", model_name="bench-served-yolov8n"),
          raw, work / "yolov8n")
    test = [(raw / r["path"]).read_bytes() for r in read_manifest(raw) if r["split"] == "test"]
    served_rows = [serve_row("yolov8n detector (today's default, from its yaml)", work / "yolov8n", work, raw, test,
                             args.serve_seconds)]
    for (task, backbone), model_dir in kept.items():
        if not backbone.endswith(":random") and backbone not in PLAIN.values():
            served_rows.append(serve_row(f"{task} on {backbone} (pretrained)", model_dir, work, raw, test,
                                         args.serve_seconds))
    print(f"\nserved on loopback, 8 clients, {args.serve_seconds:.0f} s per load, the test tiles as posted (JPEG)")
    print_table(served_rows, ("served model", "served as", "images/s flat out", "offered 20/s: done/s", "p50 ms",
                              "p99 ms", "errors"))
    print(f"work dir {work}")


def optional(value) -> str:
    return "" if value is None else f"{value:.3f}"


HEADER = ("task", "backbone", "seed", "train min", "test mAP50", "test mask mAP50", "area error (rel.)", "test AUROC",
          "thr tuned on (defective)", "recall @ thr", "CP lower 95%", "false-reject rate", "precision @ thr",
          "precision @ recall 0.95")

if __name__ == "__main__":
    main()

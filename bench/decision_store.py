"""The decision store at line volume: a drift check over 10 M stored decisions, and the endpoint with the
store on vs off.

    .venv/bin/python bench/decision_store.py [--rows 10000000] [--seconds 20] [--rounds 2]

1. Fills a SQLite store (WAL) with `--rows` realistic decisions (about six days of a 1,200 parts/min
   line), then runs a whole drift check (`defectops monitor`'s step: window query + Evidently) over
   the newest 500 in a fresh process and prints its wall time and peak RSS; and the window query alone.
2. Serves one model twice, records on and `records_url: null`, alternating rounds, each at the line's
   20 img/s from 4 clients, and prints throughput and p50/p99 of every round.
Targets: drift check <= 2 s and <= 500 MB RSS; store on within 10 % of store off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from _endpoint import build_endpoint, served

FEATURES = ["brightness", "contrast", "sharpness", "noise", "max_confidence", "mean_confidence", "n_detections",
            "emb_0", "emb_1", "emb_2", "emb_3"]


def fill(store_path: Path, rows: int, batch: int = 100_000) -> float:
    """Bulk-load `rows` decisions, 50 ms apart, as the endpoint writes them; returns seconds taken."""
    from sqlalchemy import insert

    from defectops.records.schema import decisions
    from defectops.records.store import DecisionStore

    store = DecisionStore(store_path)
    rng = np.random.default_rng(0)
    start_time = datetime.now(UTC) - timedelta(seconds=rows * 0.05)
    started = time.perf_counter()
    for first in range(0, rows, batch):
        n = min(batch, rows - first)
        feats = rng.normal(100, 10, (n, len(FEATURES))).round(3)
        scores = rng.uniform(0, 1, n)
        chunk = []
        for i in range(n):
            decision = "reject" if scores[i] > 0.97 else "review" if scores[i] > 0.9 else "accept"
            chunk.append({"time": start_time + timedelta(seconds=(first + i) * 0.05), "line": f"line-{i % 4}",
                          "station": "cam-1", "part_id": f"P-{first + i:09d}", "model_name": "defectops-detector",
                          "model_version": "7", "role": "champion", "precision": "fp32", "decision": decision,
                          "score": float(scores[i]), "threshold": 0.5,
                          "boxes": json.dumps([{"class_id": 0, "class_name": "scratch", "score": float(scores[i]),
                                                "box": [10.0, 12.0, 40.0, 44.0]}] if decision != "accept" else []),
                          "features": json.dumps(dict(zip(FEATURES, feats[i].tolist()))),
                          "image_sha256": f"{first + i:064x}", "image_uri": None, "latency_ms": 9.8})
        with store.engine.begin() as conn:
            conn.execute(insert(decisions), chunk)
        print(f"  {first + n:>11,} rows, {time.perf_counter() - started:6.0f} s", flush=True)
    store.close()
    return time.perf_counter() - started


def drift_check_in_fresh_process(store_path: Path, work: Path) -> dict:
    reference = work / "reference.csv"
    rng = np.random.default_rng(1)
    import pandas as pd

    pd.DataFrame(rng.normal(100, 10, (300, len(FEATURES))), columns=FEATURES).to_csv(reference, index=False)
    code = f"""
import json, resource, time
t0 = time.perf_counter()
from defectops.components.monitor.step import MonitorConfig, monitor, recent_decisions
import evidently.presets  # imported once by a long-running 'monitor --every'; timed apart
t1 = time.perf_counter()
window = recent_decisions({str(store_path)!r}, 500)
t2 = time.perf_counter()
verdict = monitor(MonitorConfig(features={FEATURES!r}), {str(reference)!r}, {str(store_path)!r}, {str(work / 'out')!r})
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "window_s": t2 - t1, "window_rows": len(window), "check_s": t3 - t2,
                   "status": verdict["status"], "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_rounds(args, work: Path) -> list[tuple[str, int, float, list[float], int]]:
    import yaml
    from serve_load import drive

    real, params = build_endpoint(work, reason="decision-store bench")
    settings = yaml.safe_load(params.read_text())
    off = work / "params-off.yaml"
    off.write_text(yaml.safe_dump({"serve": {**settings["serve"], "records_url": None}}))
    results = []
    for round_no in range(args.rounds):
        for label, file in (("store on", params), ("store off", off)):
            with served(file, "k") as url:
                n, seconds, latencies, errors = drive(url, "k", real, 20.0, 4, args.seconds)
            results.append((f"{label} (round {round_no + 1})", n, seconds, latencies, errors))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-store-bench-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                      DEFECTOPS_ARTIFACT_ROOT=(work / "artifacts").as_uri(),
                      DEFECTOPS_AUDIT_LOG=str(work / "audit.jsonl"), DEFECTOPS_AUDIT_KEY="bench-audit-key")
    store_path = work / "decisions.db"
    print(f"filling {args.rows:,} decisions into {store_path} ...", flush=True)
    fill_s = fill(store_path, args.rows)
    size_gb = sum(p.stat().st_size for p in work.glob("decisions.db*")) / 1e9
    check = drift_check_in_fresh_process(store_path, work)
    print(f"\nstore: {args.rows:,} decisions, {size_gb:.1f} GB on disk, filled in {fill_s:.0f} s")
    print(f"drift check over the newest 500 (fresh process): window query {check['window_s']:.3f} s "
          f"({check['window_rows']} rows), whole check incl. Evidently {check['check_s']:.2f} s "
          f"(+ {check['import_s']:.1f} s imports), peak RSS {check['rss_mb']:.0f} MB, verdict {check['status']}")
    (work / "decisions.db").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)

    print("\nendpoint at 20 img/s offered, 4 clients:")
    print("| run | images/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, seconds, latencies, errors in serve_rounds(args, work):
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        print(f"| {label} | {n / seconds:.1f} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {errors} |")
    print(f"(bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()

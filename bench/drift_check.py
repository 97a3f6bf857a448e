"""Drift-check time against the size of the inference log (goal: 10,000 logged inferences in <= 10 s).

    .venv/bin/python bench/drift_check.py [--sizes 1000,10000,100000]

Policy: `brightness` is a critical feature (a lamp change alone is drift). Writes a synthetic
reference (the size of a validation split) and inference logs of each size
in the endpoint's JSON-lines format, with a lighting shift in the newest half, then times
`defectops monitor`'s step function end to end: reading the log, Evidently's report, the HTML.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from defectops.components.monitor.step import MonitorConfig, monitor

FEATURES = ["brightness", "contrast", "sharpness", "noise", "max_confidence", "n_detections",
            "emb_0", "emb_1", "emb_2", "emb_3"]


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    data = {"brightness": rng.normal(128 + shift, 12, n), "contrast": rng.normal(22, 3, n),
            "sharpness": rng.normal(400, 60, n), "noise": rng.normal(4, 0.5, n),
            "max_confidence": rng.beta(2, 3, n), "n_detections": rng.poisson(1.2, n)}
    data.update({f"emb_{i}": rng.normal(0, 1, n) for i in range(4)})
    return pd.DataFrame(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    import evidently  # noqa: F401 - import once (about 3 s) so the rows time the check itself

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="defectops-drift-"))
    frame(rng, 300).to_csv(work / "reference.csv", index=False)
    print("| logged inferences | window compared | drift check (s) | verdict |\n|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        log = work / f"log_{size}.jsonl"
        records = pd.concat([frame(rng, size // 2), frame(rng, size - size // 2, shift=25)])
        records["model_version"] = "1"
        with open(log, "w") as fh:
            for record in records.to_dict("records"):
                fh.write(json.dumps(record) + "\n")
        config = MonitorConfig(features=FEATURES, window=size, critical_features=["brightness"])
        started = time.perf_counter()
        verdict = monitor(config, work / "reference.csv", log, work / f"out_{size}")
        elapsed = time.perf_counter() - started
        print(f"| {size:,} | {verdict['current_rows']:,} | {elapsed:.2f} | {verdict['status']} "
              f"({', '.join(verdict.get('drifted_features', []))}) |")


if __name__ == "__main__":
    main()

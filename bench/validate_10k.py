"""Validation time for a 10,000-image dataset (goal: <= 30 s on 2 cores).

    .venv/bin/python bench/validate_10k.py                 # 10,000 synthetic 128-px images
    .venv/bin/python bench/validate_10k.py --images 2000 --size 256

Generates the images with the ingest step (not timed), then times the validate step end to end:
decoding every image, sha256, perceptual hash, brightness/contrast, labels, the leakage search
across splits, the Great Expectations suites (import included), the reports and the clean
dataset (hard links).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _project import print_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.components.validate.step import ValidateConfig, validate

    work = Path(tempfile.mkdtemp(prefix="defectops-validate-"))
    started = time.perf_counter()
    ingest(IngestConfig(n_images=args.images, image_size=args.size), work / "raw")
    generated = time.perf_counter() - started
    started = time.perf_counter()
    metrics = validate(ValidateConfig(), work / "raw", work / "report", work / "validated", work / "quarantine")
    seconds = time.perf_counter() - started
    print_table([(f"images ({args.size} px) / boxes", f"{metrics['images']} / {metrics['boxes']}"),
                 (f"validation wall time ({os.cpu_count()} CPU cores)",
                  f"{seconds:.1f} s ({metrics['images'] / seconds:.0f} images/s)"),
                 ("verdict", f"{'passed' if metrics['passed'] else 'rejected'}, {metrics['bad_files']} quarantined"),
                 ("(generating the images, not timed)", f"{generated:.0f} s")])
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

"""Real datasets in with default settings: NEU-DET and the magnetic tile set, import + gate.

For each dataset: import seconds, validation seconds, images kept and quarantined, groups per
split, and (the reference, in the same run) what the gate says when the same data is split image
by image as before (`group_by: none`): how many near-duplicates then straddle two splits. Where the
gate passes, the clean set's profile is learned (`validate --profile`) and the import judged again by it.

    .venv/bin/python bench/real_data_import.py [--datasets neu-det magnetic-tile] [--keep]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import REPO, keep_or_remove, print_table  # noqa: E402

from defectops.components.ingest.step import IngestConfig, ingest  # noqa: E402
from defectops.components.validate.step import DataInvalid, ValidateConfig, learn_profile, validate  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"


def run(name: str, group_by: str, work: Path) -> dict:
    out = work / f"{name}-{group_by}"
    start = time.perf_counter()
    imported = ingest(IngestConfig(source="auto", path=SHARED / name, group_by=group_by), out / "raw")
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        gate = validate(ValidateConfig(profile=None), out / "raw", out / "report", out / "validated", out / "q")
    except DataInvalid:
        gate = json.loads((out / "report" / "metrics.json").read_text())
    validate_s = time.perf_counter() - start
    report = json.loads((out / "report" / "report.json").read_text())
    crossing = sum(f["unexpected_count"] for f in report["failures"] if f["problem"] == "near_duplicate_across_splits")
    relearned = "-"
    if report["passed"]:  # accept the clean set, learn its profile, and judge the import again by it
        config = ValidateConfig(profile=out / "gate" / "profile.json")
        learn_profile(config, out / "validated")
        again = validate(config, out / "raw", out / "report-profiled")
        relearned = f"{again['images'] - again['bad_files']} kept, {again['bad_files']} quarantined"
    return {"import_s": import_s, "validate_s": validate_s, "imported": imported, "gate": gate,
            "crossing": crossing, "passed": report["passed"], "relearned": relearned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["neu-det", "magnetic-tile"])
    parser.add_argument("--keep", action="store_true", help="Keep the imported datasets and reports.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-real-data-"))
    rows = []
    for name in args.datasets:
        if not (SHARED / name).exists():
            print(f"{SHARED / name}: not present, skipped")
            continue
        for group_by in ("near_duplicates", "none"):
            r = run(name, group_by, work)
            m, gate = r["imported"], r["gate"]
            groups = "/".join(str(m["groups_per_split"][s]) for s in ("train", "val", "test"))
            images = "/".join(str(m["per_split"][s]) for s in ("train", "val", "test"))
            rows.append((name, group_by, m["images"], images, groups, m["splits"], f"{r['import_s']:.1f}",
                         f"{r['validate_s']:.1f}", gate["images"] - gate["bad_files"], gate["bad_files"],
                         r["crossing"], "passed" if r["passed"] else "rejected", r["relearned"]))
    print_table(rows, ("dataset", "group_by", "images", "train/val/test images", "train/val/test groups", "splits",
                       "import s", "validate s", "kept", "quarantined", "near-dups across splits", "gate",
                       "again, by its learned profile"))
    keep_or_remove(work, args.keep)


if __name__ == "__main__":
    main()

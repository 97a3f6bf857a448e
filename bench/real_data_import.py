"""Real datasets in with default settings: NEU-DET, the magnetic tile set and a generated paired PCB-style set,
import + gate.

For each shared dataset: import seconds, validation seconds, images kept and quarantined, groups per split,
and (the reference, in the same run) what the gate says when the same data is split image by image
(`group_by: none`): how many copies and how many look-alikes then straddle two splits. `boards` is a
generated set with its own published split, templates and their defective boards in different splits
(`components/ingest/synthetic_boards.py`), as is, then with a byte copy and a re-encoded copy added across
splits (gate: block, then `leakage: quarantine_train_copy`). Where the gate passes, the clean set's profile
is learned (`validate --profile`) and the import judged again by it.

    .venv/bin/python bench/real_data_import.py [--datasets neu-det magnetic-tile boards] [--keep]
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
from defectops.components.ingest.synthetic_boards import write_paired_source  # noqa: E402
from defectops.components.validate.step import DataInvalid, ValidateConfig, learn_profile, validate  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"


def run(label: str, source: Path, group_by: str, work: Path, **gate) -> dict:
    out = work / label
    start = time.perf_counter()
    imported = ingest(IngestConfig(source="auto", path=source, group_by=group_by), out / "raw")
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        metrics = validate(ValidateConfig(profile=None, **gate), out / "raw", out / "report", out / "validated",
                           out / "q")
    except DataInvalid:
        metrics = json.loads((out / "report" / "metrics.json").read_text())
    validate_s = time.perf_counter() - start
    report = json.loads((out / "report" / "report.json").read_text())
    copies = sum(f["unexpected_count"] for f in report["failures"]
                 if f["problem"] in ("duplicate_across_splits", "near_duplicate_across_splits")) \
        + len(report["set_aside_train_copies"])
    relearned = "-"
    if report["passed"]:  # accept the clean set, learn its profile, and judge the import again by it
        config = ValidateConfig(profile=out / "gate" / "profile.json", **gate)
        learn_profile(config, out / "validated")
        again = validate(config, out / "raw", out / "report-profiled")
        kept = again["images"] - again["bad_files"] - again["set_aside_train_copies"]
        relearned = f"{kept} kept, {again['bad_files']} quarantined"
    return {"import_s": import_s, "validate_s": validate_s, "imported": imported, "metrics": metrics,
            "copies": copies, "lookalikes": report["lookalikes"]["count"], "passed": report["passed"],
            "set_aside": len(report["set_aside_train_copies"]), "relearned": relearned,
            "next_steps": report["next_steps"]}


def cases(names: list[str], work: Path):
    """(label, source, group_by, gate settings) for every run of the table."""
    for name in names:
        if name == "boards":
            plain, copied = (write_paired_source(work / "src" / f"boards{'-copies' * c}", designs=300, copies=c)
                             for c in (False, True))
            yield "boards", plain, "near_duplicates", {}
            yield "boards + 2 copies", copied, "near_duplicates", {}
            yield "boards + 2 copies", copied, "near_duplicates", {"leakage": "quarantine_train_copy"}
        elif not (SHARED / name).exists():
            print(f"{SHARED / name}: not present, skipped")
        else:
            for group_by in ("near_duplicates", "none"):
                yield name, SHARED / name, group_by, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["neu-det", "magnetic-tile", "boards"])
    parser.add_argument("--keep", action="store_true", help="Keep the imported datasets and reports.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-real-data-"))
    rows, said = [], []
    for i, (label, source, group_by, gate) in enumerate(cases(args.datasets, work)):
        r = run(f"{i}-{label.split()[0]}", source, group_by, work, **gate)
        m, metrics = r["imported"], r["metrics"]
        groups = "/".join(str(m["groups_per_split"][s]) for s in ("train", "val", "test"))
        images = "/".join(str(m["per_split"][s]) for s in ("train", "val", "test"))
        rows.append((label, group_by, gate.get("leakage", "block"), m["images"], images, groups, m["splits"],
                     f"{r['import_s']:.1f}", f"{r['validate_s']:.1f}", metrics["images"] - metrics["bad_files"]
                     - r["set_aside"], metrics["bad_files"], r["set_aside"], r["copies"], r["lookalikes"],
                     "passed" if r["passed"] else "rejected", r["relearned"]))
        said += [f"{label} ({group_by}, {gate.get('leakage', 'block')}): next step: {step}" for step in r["next_steps"]]
    print_table(rows, ("dataset", "group_by", "leakage", "images", "train/val/test images", "train/val/test groups",
                       "splits", "import s", "validate s", "kept", "quarantined", "train copies set aside",
                       "copies across splits", "look-alikes across splits", "gate", "again, by its learned profile"))
    print("\n".join(said))
    keep_or_remove(work, args.keep)


if __name__ == "__main__":
    main()

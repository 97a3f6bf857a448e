"""`defectops feedback export`: inspectors' answers as a canonical dataset version for the next training.

Every export writes the whole answered set (a version, not a delta) to one folder, train split only
(line images are never test images: the test split stays the fixed yardstick models are compared on),
grouped by part so one part's views stay together, and tracks it with DVC when the project is a DVC
repository. `ingest.extra_sources` merges it into the next run; `provenance.json` tells the registry
how many feedback images a model saw and whose labels they were (four-eyes reads the latter).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from defectops.dataset import PROVENANCE, Box, label_path, write_dataset_yaml, write_labels, write_manifest
from defectops.dvc_command import dvc
from defectops.feedback.answers import FeedbackError, answered
from defectops.feedback.config import FeedbackConfig
from defectops.records.store import DecisionStore


def export(config: FeedbackConfig, out: Path | None = None, track: bool = True) -> dict:
    out = Path(out or config.export_dir)
    store = DecisionStore(config.records_url)
    try:
        rows = answered(store)
    finally:
        store.close()
    latest: dict[str, dict] = {}
    for row in rows:  # the same bytes decided twice are one image; the newest answer about them wins
        latest[row["image_sha256"]] = row
    usable = {sha: r for sha, r in latest.items() if r["answer"] == "good" or r["boxes"]}
    missing = sorted(r["image_uri"] for r in usable.values() if not Path(r["image_uri"]).is_file())
    if missing:
        raise FeedbackError(f"{len(missing)} answered images are gone from the archive (first: {missing[0]}); "
                            "restore serve.archive_root before exporting, or the version would silently lack them")
    names = sorted({b["class_name"] for r in usable.values() for b in r["boxes"]})
    staging = out.with_name(f".{out.name}.incoming")
    if staging.exists():
        shutil.rmtree(staging)
    groups = {}
    for sha, row in usable.items():
        source = Path(row["image_uri"])
        rel = f"images/train/fb-{sha[:20]}{source.suffix}"
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / rel)
        with Image.open(source) as im:
            width, height = im.size
        write_labels(label_path(staging, rel), [Box.from_pixels(names.index(b["class_name"]), *_inside(b["box"], width,
                                                                                                       height),
                                                                width, height) for b in row["boxes"]])
        groups[rel] = f"part:{row['part_id']}" if row.get("part_id") else f"image:{sha[:20]}"
    write_dataset_yaml(staging, names or ["defect"])
    write_manifest(staging, groups)
    labellers = sorted({r["inspector"] for r in usable.values()})
    provenance = {"feedback": {"images": len(usable), "labellers": labellers,
                               "good": sum(1 for r in usable.values() if r["answer"] == "good"),
                               "defect": sum(1 for r in usable.values() if r["answer"] == "defect"),
                               "last_answer_id": max((r["id"] for r in rows), default=0),
                               "exported_at": datetime.now(UTC).isoformat(timespec="seconds")}}
    (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)  # the old version stays whole until the new one is complete
    result = {**provenance["feedback"], "out": str(out), "classes": names,
              "not_exported": {"defect without a box": sum(1 for r in latest.values() if r["answer"] == "defect"
                                                           and not r["boxes"])}}
    if track:
        result["dvc"] = _dvc_add(out)
    return result


def _inside(box: list[float], width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)


def _dvc_add(folder: Path) -> str:
    """A new DVC version of the folder when it lies in a DVC project (its .dvc file goes to git)."""
    root = next((p for p in (folder.resolve(), *folder.resolve().parents) if (p / ".dvc").is_dir()), None)
    if root is None:
        return "not tracked: no DVC project above this folder"
    reply = dvc("add", str(folder.resolve().relative_to(root)), cwd=root, check=False)
    if reply.returncode != 0:
        return f"dvc add failed: {(reply.stderr or reply.stdout).strip()[-300:]}"
    return f"tracked: {folder}.dvc (commit it with git; 'dvc push' sends the version to the remote)"

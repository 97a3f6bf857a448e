"""Validate: the data gate. A dataset that breaks the contract stops the pipeline here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image
from pydantic import Field

from defectops.components.validate.expectations import run_suites
from defectops.config import StepConfig
from defectops.dataset import DatasetError, iter_images, label_path, read_labels, read_manifest, read_names, sha256_file
from defectops.errors import DataInvalidError
from defectops.metrics import StepTimer, write_metrics


class ValidateConfig(StepConfig):
    min_size: int = Field(32, ge=1, description="Smallest accepted image side, pixels.")
    max_size: int = Field(8192, ge=1, description="Largest accepted image side, pixels.")


class DataInvalid(DataInvalidError):
    """The dataset breaks the contract; the report lists every offending file."""

    def __init__(self, summary: str, report_path: Path):
        super().__init__(summary)
        self.report_path = report_path


def _inspect_image(root: Path, rel: str) -> dict:
    row = {"path": rel, "exists": (root / rel).exists(), "decodes": False, "width": None, "height": None}
    if row["exists"]:
        try:
            with Image.open(root / rel) as im:
                im.load()  # full decode: verify() misses truncated files
                row["width"], row["height"] = im.size
                row["decodes"] = True
        except Exception as exc:  # noqa: BLE001 - the reason goes into the report
            row["decode_error"] = f"{type(exc).__name__}: {exc}"
    return row


def build_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Facts about every image on disk or in the manifest, and about every box."""
    manifest = {r["path"]: r for r in read_manifest(root)}
    on_disk = {rel for _, rel in iter_images(root)}
    image_rows, box_rows = [], []
    for rel in sorted(on_disk | set(manifest)):
        row = _inspect_image(root, rel)
        row["in_manifest"] = rel in manifest
        row["sha256_matches_manifest"] = (not row["exists"] or rel not in manifest
                                          or sha256_file(root / rel) == manifest[rel]["sha256"])
        try:
            boxes = read_labels(label_path(root, rel))
            row["labels_parse"] = True
        except DatasetError as exc:
            boxes, row["labels_parse"], row["label_error"] = [], False, str(exc)
        image_rows.append(row)
        for b in boxes:
            box_rows.append({"path": rel, "class_id": b.cls, "left": b.cx - b.w / 2, "top": b.cy - b.h / 2,
                             "right": b.cx + b.w / 2, "bottom": b.cy + b.h / 2, "box_width": b.w,
                             "box_height": b.h})
    return pd.DataFrame(image_rows), pd.DataFrame(box_rows)


def render_text(failures: list[dict], images: pd.DataFrame) -> str:
    lines = []
    for f in failures:
        lines.append(f"- {f['table']}.{f['column']}: {f['expectation']} {f['expected']} "
                     f"failed for {f['unexpected_count']} row(s)")
        for path in f["files"][:20]:
            detail = ""
            match = images[images["path"] == path]
            if not match.empty:
                rec = match.iloc[0].to_dict()
                detail = rec.get("decode_error") or rec.get("label_error") or ""
                detail = f"  ({detail})" if isinstance(detail, str) and detail else ""
            lines.append(f"    {path}{detail}")
    return "\n".join(lines)


def validate(config: ValidateConfig, dataset: Path, report_dir: Path) -> dict:
    """Run the suite on `dataset`; write report.json/report.txt; raise DataInvalid on any failure."""
    timer = StepTimer()
    dataset, report_dir = Path(dataset), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    names = read_names(dataset)
    images, boxes = build_tables(dataset)
    failures = run_suites(images, boxes, config.min_size, config.max_size, len(names))
    bad_files = sorted({p for f in failures for p in f["files"]})
    report = {"dataset": str(dataset), "images": len(images), "boxes": len(boxes), "passed": not failures,
              "bad_files": bad_files, "failures": failures}
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = render_text(failures, images) if failures else "all expectations met"
    (report_dir / "report.txt").write_text(text + "\n")
    metrics = {"images": len(images), "boxes": len(boxes), "failed_expectations": len(failures),
               "bad_files": len(bad_files), "passed": not failures, "seconds": timer.seconds()}
    write_metrics(report_dir / "metrics.json", metrics)
    if failures:
        raise DataInvalid(f"{dataset}: {len(bad_files)} file(s) break the data contract "
                          f"(report: {report_dir / 'report.json'}):\n{text}", report_dir / "report.json")
    return metrics

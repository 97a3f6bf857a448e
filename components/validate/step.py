"""Validate: the data gate. Bad files are set aside with their reasons; too many, or a blocking
problem (leakage between splits, a class with too few examples), stops the pipeline here.

Reads the imported dataset and never changes it; writes the clean dataset the rest of the
pipeline trains and evaluates on, the quarantine (each bad file with its labels and reasons),
and a JSON + HTML + text report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from defectops.components.validate import profile as gate_profile
from defectops.components.validate.expectations import DATASET_PROBLEMS, FILE_PROBLEMS, TRAIN_COPY, run_suites
from defectops.components.validate.facts import SPREAD_FLOOR, build_tables, isolated, robust_spread
from defectops.components.validate.next_steps import next_steps
from defectops.config import StepConfig
from defectops.dataset import (
    copy_provenance,
    label_path,
    mask_path,
    read_manifest,
    read_names,
    write_dataset_yaml,
    write_manifest_rows,
)
from defectops.errors import DataInvalidError
from defectops.metrics import StepTimer, write_metrics
from defectops.near_duplicates import COPY_DISTANCE, MAX_DISTANCE


class ValidateConfig(StepConfig):
    min_size: int = Field(32, ge=1, description="Smallest accepted image side, pixels.")
    max_size: int = Field(8192, ge=1, description="Largest accepted image side, pixels.")
    channels: list[int] = Field([1, 3], description="Accepted channel counts (1 grey, 3 colour).")
    min_images_per_class: int = Field(5, ge=1, description="Fewer images of a defect type than this blocks the run.")
    near_duplicate_max_distance: int = Field(
        MAX_DISTANCE, ge=0, le=32, description="Perceptual-hash bits within which two images in different splits "
                                               "look alike (one product's parts, a board and its template): "
                                               "reported, never blocking. Ingest's resplit keeps such images in "
                                               "one split (defectops.near_duplicates).")
    copy_max_distance: int = Field(
        COPY_DISTANCE, ge=0, le=32, description="Hash bits within which two images with the same labels are one "
                                                "picture saved twice (a re-encoded copy): leakage across splits, "
                                                "like the same file or the same decoded pixels.")
    leakage: Literal["block", "quarantine_train_copy"] = Field(
        "block", description="A copy in two splits: block (fail closed, the later split's copy quarantined) | "
                             "quarantine_train_copy (the training copy set aside, val and test kept byte for byte; "
                             "copies between val and test still block).")
    outlier_z: float = Field(5.0, gt=0, description="Brightness/contrast further than this many robust standard "
                                                    "deviations from the dataset's median is an outlier.")
    min_contrast: float = Field(2.0, ge=0, description="Grey-level standard deviation below which an image is blank "
                                                       "(when its grey-level range is also below blank_max_range).")
    blank_max_range: float = Field(24.0, ge=0, le=255, description="Grey-level range (max - min) below which a flat "
                                   "image is blank; a sparse two-level image has a full range and is not.")
    subpopulation_share: float = Field(0.005, ge=0, le=1, description="Without a learned profile: an image whose "
                                       "brightness/contrast is shared (within one robust SD) by this share of the "
                                       "images, and at least 3, is a sub-population, not an outlier.")
    profile: Path | dict | None = Field(Path("data/gate/profile.json"), description="Limits learned from accepted "
                                        "data ('defectops validate --profile'): its file, or the profile itself "
                                        "(cloud runs carry it inline); the settings above apply where it is absent.")
    max_bad_fraction: float = Field(0.01, ge=0, le=1, description="Share of images that may be quarantined before "
                                                                  "the run fails closed.")
    blocking: list[str] = Field(["duplicate_across_splits", "near_duplicate_across_splits"],
                                description="File problems that fail the run whatever their share.")

    @field_validator("blocking")
    @classmethod
    def _known_problems(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FILE_PROBLEMS))
        if unknown:
            raise ValueError(f"unknown problems {unknown}; choose from {list(FILE_PROBLEMS)}")
        return value


class DataInvalid(DataInvalidError):
    """The dataset breaks the contract; the report lists every offending file."""

    def __init__(self, summary: str, report_path: Path):
        super().__init__(summary)
        self.report_path = report_path


def _detail(row: dict) -> str:
    for key, label in (("decode_error", ""), ("label_error", ""), ("duplicate_of", "same file as "),
                       ("near_duplicate_of", "a copy of "), ("held_out_copy_of", "a copy of the held-out ")):
        value = row.get(key)
        if isinstance(value, str) and value:
            return f"{label}{value}"
    return ""


def quarantine_files(dataset: Path, images: pd.DataFrame, failures: list[dict], folder: Path) -> list[dict]:
    """Copy every bad file and its labels under `folder` (same relative paths) with reasons.json."""
    problems: dict[str, list[str]] = {}
    for f in failures:
        for path in f.get("files", []):
            problems.setdefault(path, [])
            if f["problem"] not in problems[path]:
                problems[path].append(f["problem"])
    rows = {r["path"]: r for r in images.to_dict("records")}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    records = []
    for path in sorted(problems):
        for source, target in ((dataset / path, folder / path), (label_path(dataset, path), label_path(folder, path)),
                               (mask_path(dataset, path), mask_path(folder, path))):
            if source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        records.append({"path": path, "problems": problems[path], "detail": _detail(rows.get(path, {}))})
    (folder / "reasons.json").write_text(json.dumps(records, indent=2) + "\n")
    return records


def write_clean(dataset: Path, exclude: set[str], out: Path) -> int:
    """The dataset without the quarantined files: hard links where possible (no extra disk)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    kept = [r for r in read_manifest(dataset) if r["path"] not in exclude]
    for row in kept:
        for source, target in ((dataset / row["path"], out / row["path"]),
                               (label_path(dataset, row["path"]), label_path(out, row["path"])),
                               (mask_path(dataset, row["path"]), mask_path(out, row["path"]))):
            if not source.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
    write_dataset_yaml(out, read_names(dataset))
    write_manifest_rows(out, kept)
    copy_provenance(dataset, out)
    return len(kept)


def limits_note(limits: dict) -> str:
    """Where the limits came from, and how to make them this line's own."""
    if limits["source"] == "profile":
        return f"limits: learned from accepted data ({limits['profile']})"
    return ("limits: the settings' defaults (no learned profile yet); once you accept a dataset, "
            "'defectops validate --dataset data/validated --profile' makes its ranges the gate's")


def lookalikes(images: pd.DataFrame, examples: int = 10) -> dict:
    """Look-alikes across splits (one design, not one picture): counted and shown, never blocking."""
    rows = images[images["lookalike_of"].notna()].sort_values("lookalike_distance")
    return {"count": len(rows), "rule": "perceptual hash within validate.near_duplicate_max_distance bits, not a "
                                        "copy (further than copy_max_distance bits, or other labels)",
            "examples": [{"path": p, "looks_like": o, "bits": int(d)}
                         for p, o, d in zip(rows["path"], rows["lookalike_of"], rows["lookalike_distance"])][:examples]}


def render_text(verdict: str, failures: list[dict], quarantined: list[dict], limits: dict,
                alike: dict | None = None, steps: list[str] = ()) -> str:
    lines = [verdict, limits_note(limits)]
    for f in failures:
        named = f.get("files") or f.get("classes") or []
        lines.append(f"- {f['problem']}{' [blocking]' if f['blocking'] else ''}: {f['table']}.{f['column']} "
                     f"{f['expectation']} {f['expected']} failed for {f['unexpected_count']} row(s)")
        details = {q["path"]: q["detail"] for q in quarantined}
        lines += [f"    {item}" + (f"  ({details[item]})" if details.get(item) else "") for item in named[:20]]
    if alike and alike["count"]:
        lines.append(f"look-alikes across splits (same design, not copies; not blocking): {alike['count']}, e.g.")
        lines += [f"    {e['path']} ~ {e['looks_like']} ({e['bits']} bits)" for e in alike["examples"][:5]]
    if steps:
        lines.append("next step:")
        lines += [f"  - {step}" for step in steps]
    return "\n".join(lines)


def render_html(context: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
    return env.get_template("report.html").render(**context)


def validate(config: ValidateConfig, dataset: Path, report_dir: Path, out: Path | None = None,
             quarantine: Path | None = None) -> dict:
    """Check `dataset`; quarantine bad files; write the clean dataset to `out` when the gate passes.

    Raises DataInvalid (exit code 3) when a blocking problem is found or the quarantined share
    exceeds `max_bad_fraction`.
    """
    timer = StepTimer()
    dataset, report_dir = Path(dataset), Path(report_dir)
    quarantine = Path(quarantine) if quarantine else report_dir / "quarantine"
    report_dir.mkdir(parents=True, exist_ok=True)
    names = read_names(dataset)
    images, boxes, classes = build_tables(dataset, config.near_duplicate_max_distance, config.copy_max_distance,
                                          keep_held_out=config.leakage == "quarantine_train_copy")
    learned = gate_profile.load(config.profile, names)
    limits = gate_profile.limits_for(config, images, learned)
    if learned is not None:
        limits["profile"] = "inline" if isinstance(config.profile, dict) else str(config.profile)
    neighbours = max(2, math.ceil(config.subpopulation_share * len(images)) - 1)
    for column, floor in SPREAD_FLOOR.items():
        images[f"{column}_lone"] = isolated(images[column], robust_spread(images[column], floor), neighbours)
    failures = run_suites(images, boxes, classes, limits, len(names))
    for f in failures:
        f["blocking"] = f["problem"] in DATASET_PROBLEMS or f["problem"] in config.blocking
    quarantined = quarantine_files(dataset, images, failures, quarantine)
    # Training copies set aside by validate.leakage are the user's choice, not bad files.
    set_aside = [q["path"] for q in quarantined if q["problems"] == [TRAIN_COPY]]
    bad_files = len(quarantined) - len(set_aside)
    bad_fraction = bad_files / max(len(images), 1)
    blocking = sorted({f["problem"] for f in failures if f["blocking"]})
    too_many = bad_fraction > config.max_bad_fraction
    passed = not blocking and not too_many
    if passed:
        verdict = (f"passed: {bad_files} file(s) quarantined ({bad_fraction:.2%}, limit "
                   f"{config.max_bad_fraction:.2%})" if bad_files else "passed: all expectations met")
        if set_aside:
            verdict += f"; {len(set_aside)} train image(s) copying val/test images set aside (validate.leakage)"
    else:
        reasons = ([f"blocking problem(s): {', '.join(blocking)}"] if blocking else []) + (
            [f"{bad_files} bad file(s) = {bad_fraction:.2%} > limit {config.max_bad_fraction:.2%}"]
            if too_many else [])
        verdict = "rejected: " + "; ".join(reasons)
    notes = [f"{p} is the same file as {d} (same split: counted twice in training, not leakage)"
             for p, d in zip(images["path"], images["same_split_duplicate_of"]) if isinstance(d, str)]
    steps = [] if passed else next_steps(blocking, failures, images, classes, config.min_images_per_class,
                                         bad_files, bad_fraction, config.max_bad_fraction, str(quarantine))
    report = {"dataset": str(dataset), "images": len(images), "boxes": len(boxes), "passed": passed,
              "verdict": verdict, "bad_files": [q["path"] for q in quarantined if q["path"] not in set_aside],
              "bad_fraction": bad_fraction, "max_bad_fraction": config.max_bad_fraction,
              "set_aside_train_copies": set_aside, "blocking": blocking, "failures": failures,
              "quarantined": quarantined, "quarantine_dir": str(quarantine), "lookalikes": lookalikes(images),
              "notes": notes, "next_steps": steps, "limits": limits, "seconds": timer.seconds()}
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = render_text(verdict, failures, quarantined, limits, report["lookalikes"], steps)
    (report_dir / "report.txt").write_text(text + "\n")
    (report_dir / "report.html").write_text(render_html({**report, "limits_note": limits_note(limits)}))
    metrics = {"images": len(images), "boxes": len(boxes), "failed_expectations": len(failures),
               "bad_files": bad_files, "bad_fraction": bad_fraction, "set_aside_train_copies": len(set_aside),
               "lookalikes_across_splits": report["lookalikes"]["count"], "blocking": blocking,
               "passed": passed, "seconds": timer.seconds()}
    if passed and out is not None:
        metrics["clean_images"] = write_clean(dataset, {q["path"] for q in quarantined}, Path(out))
    write_metrics(report_dir / "metrics.json", metrics)
    if not passed:
        if out is not None and Path(out).exists():
            shutil.rmtree(out)  # no stale clean set from an earlier run may slip through
        raise DataInvalid(f"{dataset}: {verdict} (report: {report_dir / 'report.html'}; quarantined copies: "
                          f"{quarantine}):\n{text}", report_dir / "report.json")
    return metrics


def learn_profile(config: ValidateConfig, dataset: Path, path: Path | None = None) -> dict:
    """Learn the gate's limits from `dataset` (one a person accepted, e.g. data/validated) and store
    them where validate looks (`profile`); returns the stored profile."""
    dataset = Path(dataset)
    target = Path(path) if path else config.profile
    if not isinstance(target, Path):
        raise DataInvalidError("validate.profile is not a file path: say where the profile goes (--profile-path)")
    names = read_names(dataset)
    images, boxes, _ = build_tables(dataset, config.near_duplicate_max_distance)
    learned = gate_profile.learn(config, dataset, images, boxes, names)
    gate_profile.write(learned, target)
    return learned

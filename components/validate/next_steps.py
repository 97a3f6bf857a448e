"""The gate's last word: for each reason it stopped, the one setting or command that resolves it, and its cost.

A rejected run is only useful if the person reading the report knows what to do next without reading the
code; each line names the knob (`validate.*`, `ingest.*`) and what turning it gives up.
"""

from __future__ import annotations

import pandas as pd

from defectops.components.validate.expectations import TRAIN_COPY

LEAKAGE = ("duplicate_across_splits", "near_duplicate_across_splits")


def _leakage_step(images: pd.DataFrame) -> list[str]:
    """Copies across splits: which of them the training side can absorb, which only the source can fix."""
    split = dict(zip(images["path"], images["split"]))
    pairs = [(path, original) for column in ("duplicate_of", "near_duplicate_of")
             for path, original in zip(images["path"], images[column]) if isinstance(original, str)]
    from_train = sorted({original for _, original in pairs if split.get(original) == "train"})
    held_out = [(path, original) for path, original in pairs if split.get(original) != "train"]
    steps = []
    if from_train:
        steps.append(f"copies across splits: set validate.leakage: quarantine_train_copy — keeps your val and test "
                     f"splits byte for byte; {len(from_train)} train image(s) set aside (copied to the quarantine)")
    if held_out:
        steps.append(f"{len(held_out)} copy pair(s) between val and test (e.g. {held_out[0][0]} = "
                     f"{held_out[0][1]}): remove one of each pair at the source and re-import, or set "
                     "ingest.split_mode: resplit — copies then share a split, but your published split is lost")
    return steps


def next_steps(blocking: list[str], failures: list[dict], images: pd.DataFrame, classes: pd.DataFrame,
               min_images: int, bad_files: int, bad_fraction: float, max_bad_fraction: float,
               quarantine: str) -> list[str]:
    """One line per reason the gate stopped: the setting or command that resolves it and what it costs."""
    steps: list[str] = []
    if any(problem in blocking for problem in LEAKAGE):
        steps += _leakage_step(images)
    if "too_few_examples" in blocking:
        few = classes[classes["images"] < min_images].sort_values("images")
        listed = ", ".join(f"{name} ({count})" for name, count in zip(few["class_name"], few["images"]))
        steps.append(f"fewer than {min_images} images of {listed}: add images of them, or set "
                     f"validate.min_images_per_class: {max(int(few['images'].min()), 1)} — the model then learns "
                     "and is judged on that few examples")
    if "duplicate_path" in blocking:
        steps.append("two manifest rows name one path: re-run 'defectops ingest' (the manifest is ingest's)")
    for problem in blocking:
        if problem in LEAKAGE or problem in ("too_few_examples", "duplicate_path", TRAIN_COPY):
            continue
        count = sum(f["unexpected_count"] for f in failures if f["problem"] == problem)
        steps.append(f"{problem}: remove it from validate.blocking — its {count} file(s) are then quarantined "
                     "instead of stopping the run")
    if TRAIN_COPY in blocking:
        steps.append(f"{TRAIN_COPY}: remove it from validate.blocking — the train copies are then set aside")
    if bad_fraction > max_bad_fraction:
        steps.append(f"{bad_files} bad file(s) ({bad_fraction:.2%}): fix or drop them at the source (the reasons "
                     f"are in {quarantine}/reasons.json), or set validate.max_bad_fraction: "
                     f"{bad_fraction + 0.0005:.3f} — trains without those {bad_files} file(s)")
    return steps

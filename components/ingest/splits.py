"""Which split each image goes to: the source's own where it has one, else a stratified, group-aware split.

Images of one part (a board and its reference, shots of one coil) must share a split, or the test
set scores the model on what it trained on. Groups come from a regex on the source path or from
near-duplicate clusters (`defectops.near_duplicates`, the rule the gate checks).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from defectops.components.ingest.items import Item
from defectops.config import StepConfig
from defectops.dataset import SPLITS, DatasetError
from defectops.near_duplicates import MAX_DISTANCE, clusters, hash_files

if TYPE_CHECKING:
    from defectops.components.ingest.step import IngestConfig

NEAR_DUPLICATES = "near_duplicates"
NO_GROUPS = "none"


class SplitFractions(StepConfig):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:.3f}")
        return self


def assign_splits(keys: list[str], strata: list[str], fractions: SplitFractions,
                  groups: list[str] | None = None) -> list[str]:
    """Deterministic, stratified, group-aware split: groups (an image alone when `groups` is None)
    are ranked by a hash of their name within each stratum and filled into val, then test, then train.

    Hash order (not a shuffled RNG) keeps an item's split stable when others are added. A group
    never straddles splits; its stratum is its rarest member's, so rare classes spread over splits.
    """
    groups = groups if groups is not None else keys
    size = Counter(strata)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    group_stratum = {g: min((strata[i] for i in idx), key=lambda s: (size[s], s)) for g, idx in members.items()}
    result = [""] * len(keys)
    for stratum in sorted(set(group_stratum.values())):
        ranked = sorted((g for g, s in group_stratum.items() if s == stratum),
                        key=lambda g: hashlib.sha256(g.encode()).hexdigest())
        n = sum(len(members[g]) for g in ranked)
        n_val = max(1, round(n * fractions.val)) if n >= 3 and fractions.val else 0
        n_test = max(1, round(n * fractions.test)) if n >= 3 and fractions.test else 0
        placed = 0
        for g in ranked:
            split = "val" if placed < n_val else "test" if placed < n_val + n_test else "train"
            for i in members[g]:
                result[i] = split
            placed += len(members[g])
    return result


def image_groups(config: IngestConfig, items: list[Item], keys: list[str]) -> list[str]:
    """The group of every item: a regex's first group on its source path, or its near-duplicate
    cluster (named after its first member's key)."""
    if config.group_by == NO_GROUPS:
        return list(keys)
    if config.group_by != NEAR_DUPLICATES:
        pattern = re.compile(config.group_by)
        found = []
        for item in items:
            rel = _source_rel(config, item.path)
            match = pattern.search(rel)
            if match is None:
                raise DatasetError(f"{item.path}: group_by {config.group_by!r} does not match '{rel}'; every image "
                                   "needs a group (or use group_by: near_duplicates)")
            found.append(match.group(1) if pattern.groups else match.group(0))
        return found
    hashes = hash_files([item.path for item in items])  # undecodable: alone here, named by validate
    return [keys[root] for root in clusters(hashes, MAX_DISTANCE)]


def _source_rel(config: IngestConfig, path: Path) -> str:
    root = Path(config.path).resolve()
    root = root.parent if root.is_file() else root
    path = Path(path).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def plan_splits(config: IngestConfig, items: list[Item], keys: list[str], strata: list[str],
                groups: list[str]) -> tuple[list[str], str]:
    """(split per item, how it was decided). `keep` keeps the source's splits; a missing val or test
    is carved out of the source's train, group-aware; images the source left unassigned are split
    like a fresh dataset. Without source splits (or with `resplit`), everything is split."""
    given = [item.split for item in items]
    present = {s for s in given if s}
    if config.split_mode == "resplit" or not present or present == {"train"}:
        return assign_splits(keys, strata, config.split, groups), "resplit"
    splits = list(given)

    def split_among(indices: list[int], fractions: SplitFractions) -> None:
        sub = assign_splits([keys[i] for i in indices], [strata[i] for i in indices], fractions,
                            [groups[i] for i in indices])
        for i, s in zip(indices, sub):
            splits[i] = s

    how = "kept"
    fresh = [i for i, s in enumerate(given) if not s]
    if fresh:
        split_among(fresh, config.split)
        how += f"; {len(fresh)} unassigned image(s) split"
    missing = [s for s in ("val", "test") if s not in present]
    if missing:
        share = {s: getattr(config.split, s) for s in missing}
        whole = config.split.train + sum(share.values())
        split_among([i for i, s in enumerate(splits) if s == "train"],
                    SplitFractions.model_construct(train=config.split.train / whole, val=share.get("val", 0) / whole,
                                                   test=share.get("test", 0) / whole))
        how += f"; {' and '.join(missing)} carved out of train"
    return splits, how


def split_warnings(rows: list[dict], names: list[str]) -> list[str]:
    """A split without a class cannot train (train) or measure (val, test) it: said, not fatal."""
    found = []
    for split in SPLITS:
        in_split = [r for r in rows if r["split"] == split]
        present = {c for r in in_split for c in r["classes"].split(";") if c}
        missing = [n for n in names if n not in present]
        if not in_split:
            found.append(f"split '{split}' is empty")
        elif missing:
            found.append(f"split '{split}' has no image of {missing}")
    return found

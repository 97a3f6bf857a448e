"""Extra canonical datasets merged into the train split: inspector feedback, a second line's images.

They join training only: the val and test splits stay the base dataset's, so models trained with and
without the extras are compared on the same yardstick. Classes are matched by name (an extra set's own
class ids mean nothing here); a name the base does not know is an error, never a silent new class.
Where the images came from is kept in `provenance.json`, which every later step carries forward, so
the registry can say how many feedback images a model saw and whose labels they were.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from defectops.dataset import (
    PROVENANCE,
    DatasetError,
    label_path,
    read_labels,
    read_manifest,
    read_names,
    read_provenance,
    write_labels,
)


def merge_extra_sources(sources: list[Path], names: list[str], out: Path) -> tuple[dict[str, str], dict]:
    """Copy every image of each source into out/images/train; (group per new path, merged provenance)."""
    groups: dict[str, str] = {}
    images, labellers, per_source = 0, set(), {}
    for source in sources:
        source = Path(source)
        if not (source / "dataset.yaml").is_file():
            raise DatasetError(f"ingest.extra_sources: {source} is not a canonical dataset (no dataset.yaml); "
                               "expected a folder written by 'defectops feedback export' or 'defectops ingest'")
        theirs = read_names(source)
        unknown = sorted({theirs[b.cls] for row in read_manifest(source)
                          for b in read_labels(label_path(source, row["path"])) if theirs[b.cls] not in names})
        if unknown:
            raise DatasetError(f"ingest.extra_sources: {source / 'dataset.yaml'} has classes {unknown} that the base "
                               f"dataset does not ({names}); relabel them or add the class to the base data")
        rows = read_manifest(source)
        for row in rows:
            target = f"images/train/{Path(row['path']).name}"
            if (out / target).exists():
                raise DatasetError(f"ingest.extra_sources: {source / row['path']} would replace {out / target}; "
                                   "image names must be unique across the base and extra datasets")
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / row["path"], out / target)
            write_labels(label_path(out, target), [replace(b, cls=names.index(theirs[b.cls]))
                                                   for b in read_labels(label_path(source, row["path"]))])
            groups[target] = f"{source.name}:{row.get('group') or Path(row['path']).stem}"
        facts = read_provenance(source).get("feedback", {})
        images += len(rows) if facts else 0
        labellers |= set(facts.get("labellers", []))
        per_source[str(source)] = len(rows)
    provenance = {"feedback_images": images, "feedback_labellers": sorted(labellers), "extra_sources": per_source}
    (out / PROVENANCE).write_text(json.dumps({"feedback": {"images": images, "labellers": sorted(labellers)},
                                              "extra_sources": per_source}, indent=2) + "\n")
    return groups, provenance


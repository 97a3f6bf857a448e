"""COCO detection JSON: `images`, `annotations` (bbox = [x, y, width, height] in pixels), `categories`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from defectops.components.ingest.items import Item, find_image, split_name
from defectops.dataset import DatasetError


def coco_files(src: Path) -> dict[Path, str | None]:
    """The annotation files with the split each names: `src` itself, the one JSON under `src`, or
    one JSON per split (instances_train.json, valid/_annotations.coco.json, ...)."""
    src = Path(src)
    if src.is_file():
        return {src: None}
    candidates = [p for p in sorted(src.rglob("*.json")) if looks_like_coco(p)]
    if not candidates:
        raise DatasetError(f"{src}: no COCO annotation file (a .json with 'images', 'annotations', 'categories')")
    if len(candidates) == 1:
        return {candidates[0]: _split_in_name(candidates[0], src)}
    splits = {p: _split_in_name(p, src) for p in candidates}
    unnamed = [str(p) for p, split in splits.items() if split is None]
    if unnamed or len(set(splits.values())) != len(splits):
        raise DatasetError(f"{src}: several COCO files {[str(p) for p in candidates[:5]]} and they do not name one "
                           "split each (train/val/test in the file or folder name); pass one of them as the path")
    return splits


def _split_in_name(path: Path, src: Path) -> str | None:
    """The split a file names: a word of its name (instances_val2017 -> val) or of a folder below `src`."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    for part in path.relative_to(src).parent.parts:
        words += re.split(r"[^a-z]+", part.lower())
    found = {split_name(w) for w in words} - {None}
    return found.pop() if len(found) == 1 else None


def looks_like_coco(path: Path) -> bool:
    try:
        with open(path) as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head or '"categories"' in head


def _field(record: dict, key: str, where: str, kind):
    if key not in record:
        raise DatasetError(f"{where}: missing field '{key}'")
    if not isinstance(record[key], kind):
        raise DatasetError(f"{where}: field '{key}' must be {getattr(kind, '__name__', kind)}, "
                           f"got {type(record[key]).__name__}")
    return record[key]


def import_coco(src: Path) -> tuple[list[str], list[Item]]:
    """Images without annotations are defect-free; class names follow category id order. With one
    file per split, every file must carry the same category names."""
    names, items = None, []
    for path, split in coco_files(src).items():
        file_names, file_items = _import_coco_file(path, split)
        if names is not None and file_names != names:
            raise DatasetError(f"{path}: categories {file_names} differ from the other split's {names}")
        names = file_names
        items += file_items
    return names, items


def _import_coco_file(path: Path, split: str | None) -> tuple[list[str], list[Item]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    categories = _field(data, "categories", str(path), list)
    images = _field(data, "images", str(path), list)
    annotations = _field(data, "annotations", str(path), list)
    if not categories:
        raise DatasetError(f"{path}: 'categories' is empty; at least one defect class is needed")
    by_id = {}
    for i, cat in enumerate(categories):
        where = f"{path}: categories[{i}]"
        by_id[_field(cat, "id", where, int)] = _field(cat, "name", where, str)
    names = [by_id[k] for k in sorted(by_id)]
    class_index = {cat_id: names.index(name) for cat_id, name in by_id.items()}
    files = {}
    for i, image in enumerate(images):
        where = f"{path}: images[{i}]"
        files[_field(image, "id", where, (int, str))] = _field(image, "file_name", where, str)
    boxes: dict = {image_id: [] for image_id in files}
    for i, ann in enumerate(annotations):
        where = f"{path}: annotations[{i}]"
        image_id, cat_id = _field(ann, "image_id", where, (int, str)), _field(ann, "category_id", where, int)
        bbox = _field(ann, "bbox", where, list)
        if image_id not in files:
            raise DatasetError(f"{where}: image_id {image_id!r} is not in 'images'")
        if cat_id not in class_index:
            raise DatasetError(f"{where}: category_id {cat_id} is not in 'categories' ({sorted(class_index)})")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise DatasetError(f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
        x, y, w, h = map(float, bbox)
        boxes[image_id].append((class_index[cat_id], x, y, x + w, y + h))
    index: dict = {}
    items = [Item(find_image(path.parent, name, path, index), boxes[image_id], split)
             for image_id, name in files.items()]
    return names, items

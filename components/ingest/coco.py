"""COCO detection JSON: `images`, `annotations` (bbox = [x, y, width, height] in pixels), `categories`."""

from __future__ import annotations

import json
from pathlib import Path

from defectops.components.ingest.importers import Item, find_image
from defectops.dataset import DatasetError


def coco_json(src: Path) -> Path:
    """The annotation file: `src` itself, or the one JSON under `src` holding images and annotations."""
    src = Path(src)
    if src.is_file():
        return src
    candidates = [p for p in sorted(src.rglob("*.json")) if looks_like_coco(p)]
    if not candidates:
        raise DatasetError(f"{src}: no COCO annotation file (a .json with 'images', 'annotations', 'categories')")
    if len(candidates) > 1:
        raise DatasetError(f"{src}: several COCO files {[str(p) for p in candidates[:5]]}; "
                           "pass one of them as the path")
    return candidates[0]


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
    """Images without annotations are defect-free; class names follow category id order."""
    path = coco_json(src)
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
    items = [(find_image(path.parent, name, path, index), boxes[image_id]) for image_id, name in files.items()]
    return names, items

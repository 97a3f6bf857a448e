"""Importers from public annotation formats into the canonical dataset.

Each importer returns (class names, [(source image path, boxes in pixels)]) and never
writes; `step.ingest` does the splitting and writing, the same way for every format.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from PIL import Image

from defectops.dataset import IMAGE_SUFFIXES, DatasetError, read_labels

PixelBox = tuple[int, float, float, float, float]  # class id, x1, y1, x2, y2
Item = tuple[Path, list[PixelBox]]


def import_voc(src: Path, class_names: list[str] | None = None) -> tuple[list[str], list[Item]]:
    """Pascal VOC: one XML per image (`<object><name>`, `<bndbox>`), images beside or in sibling folders.

    Works with flat folders and with layouts such as NEU-DET's IMAGES/ + ANNOTATIONS/ pairs:
    every XML under `src` is matched to the image of the same stem under `src`.
    """
    src = Path(src)
    xmls = sorted(src.rglob("*.xml"))
    if not xmls:
        raise DatasetError(f"{src}: no Pascal VOC .xml annotation files found")
    images = {p.stem: p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    parsed = []
    seen_names: list[str] = []
    for xml_path in xmls:
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            raise DatasetError(f"{xml_path}: not valid XML ({exc})") from None
        filename = root.findtext("filename") or ""
        image = images.get(Path(filename).stem) or images.get(xml_path.stem)
        if image is None:
            raise DatasetError(f"{xml_path}: no image found for <filename>{filename}</filename> under {src}")
        objects = []
        for i, obj in enumerate(root.findall("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            if not name or box is None:
                raise DatasetError(f"{xml_path}: object #{i} needs <name> and <bndbox>")
            try:
                coords = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                raise DatasetError(f"{xml_path}: object #{i} ({name}): <bndbox> needs numeric "
                                   "xmin, ymin, xmax, ymax") from None
            objects.append((name, *coords))
            if name not in seen_names:
                seen_names.append(name)
        parsed.append((image, objects))
    names = list(class_names) if class_names else sorted(seen_names)
    unknown = sorted(set(seen_names) - set(names))
    if unknown:
        raise DatasetError(f"{src}: classes {unknown} are not in the configured class names {names}")
    index = {n: i for i, n in enumerate(names)}
    items = [(image, [(index[n], x1, y1, x2, y2) for n, x1, y1, x2, y2 in objects]) for image, objects in parsed]
    return names, items


def import_yolo(src: Path) -> tuple[list[str], list[Item]]:
    """A YOLO directory: a data yaml with `names`, images/ and labels/ trees mirroring each other."""
    src = Path(src)
    yamls = [p for p in (src / "dataset.yaml", src / "data.yaml") if p.exists()]
    if not yamls:
        raise DatasetError(f"{src}: expected dataset.yaml or data.yaml with the class 'names'")
    names = (yaml.safe_load(yamls[0].read_text()) or {}).get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise DatasetError(f"{yamls[0]}: field 'names' is missing or empty")
    images = sorted(p for p in (src / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{src / 'images'}: no images found")
    items = []
    for image in images:
        rel = image.relative_to(src / "images")
        labels = read_labels(src / "labels" / rel.with_suffix(".txt"))
        with Image.open(image) as im:
            w, h = im.size
        for b in labels:
            if not 0 <= b.cls < len(names):
                raise DatasetError(f"{src / 'labels' / rel.with_suffix('.txt')}: class id {b.cls} "
                                   f"is outside 0..{len(names) - 1} ({yamls[0]} names)")
        items.append((image, [(b.cls, *b.to_pixels(w, h)) for b in labels]))
    return list(names), items

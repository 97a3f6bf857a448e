"""Importers from public annotation formats into the canonical dataset.

Each importer returns (class names, [(source image path, boxes in pixels)]) and never
writes; `step.ingest` does the splitting and writing, the same way for every format. This
module holds YOLO and Pascal VOC, the lookup helpers, and format auto-detection; COCO and the
image-level layouts (classification folders, MVTec-AD) have modules of their own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from PIL import Image

from defectops.dataset import IMAGE_SUFFIXES, DatasetError, read_labels

PixelBox = tuple[int, float, float, float, float]  # class id, x1, y1, x2, y2
Item = tuple[Path, list[PixelBox]]
FORMATS = ("yolo", "voc", "coco", "folders", "mvtec")


def find_image(base: Path, file_name: str, annotation: Path, index: dict) -> Path:
    """An annotation's image: relative to the annotation's folder, in images/, or by name below it.

    `index` is the caller's per-import cache of the tree below `base` (built on first need)."""
    for candidate in (base / file_name, base / "images" / file_name):
        if candidate.is_file():
            return candidate
    if not index:
        for path in base.rglob("*"):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(path.name, []).append(path)
    matches = index.get(Path(file_name).name, [])
    if len(matches) != 1:
        where = "found several times" if matches else "not found"
        raise DatasetError(f"{annotation}: image '{file_name}' {where} (looked beside it, in images/ and below {base})")
    return matches[0]


def detect_format(src: Path) -> str:
    """Name the layout of `src` from its files, or say which layouts were expected."""
    src = Path(src)
    if not src.exists():
        raise DatasetError(f"{src}: does not exist")
    if src.is_file():
        if src.suffix.lower() == ".json":
            return "coco"
        raise DatasetError(f"{src}: a file import must be a COCO .json; folders are detected by their layout")
    if (src / "dataset.yaml").exists() or (src / "data.yaml").exists():
        return "yolo"
    if (src / "train" / "good").is_dir() and (src / "test").is_dir():
        return "mvtec"
    if any(src.rglob("*.xml")):
        return "voc"
    from defectops.components.ingest.coco import looks_like_coco

    if any(looks_like_coco(p) for p in src.rglob("*.json")):
        return "coco"
    if any(p.is_dir() and any(c.suffix.lower() in IMAGE_SUFFIXES for c in p.iterdir()) for p in src.iterdir()):
        return "folders"
    raise DatasetError(f"{src}: unknown layout; expected one of: YOLO (data.yaml + images/ + labels/), Pascal VOC "
                       "(*.xml beside images), COCO (a .json with images/annotations/categories), classification "
                       "folders (<class>/*.png, good/ok = defect-free), MVTec-AD (train/good, test/<defect>, "
                       "ground_truth/)")


def import_any(fmt: str, src: Path) -> tuple[str, list[str], list[Item]]:
    """(format used, class names, items); `fmt` 'auto' detects it."""
    from defectops.components.ingest.coco import import_coco
    from defectops.components.ingest.folders import import_folders, import_mvtec

    fmt = detect_format(src) if fmt == "auto" else fmt
    importers = {"yolo": import_yolo, "voc": import_voc, "coco": import_coco, "folders": import_folders,
                 "mvtec": import_mvtec}
    if fmt not in importers:
        raise DatasetError(f"unknown import format '{fmt}': expected auto or one of {list(importers)}")
    return (fmt, *importers[fmt](Path(src)))


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

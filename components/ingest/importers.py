"""Importers from public annotation formats into the canonical dataset.

Each importer returns (class names, items) and never writes; `step.ingest` does the splitting
and writing, the same way for every format. An item keeps what the source says of an image: its
boxes, the source's own split when it has one (a user's test set is the one their acceptance
numbers are reported on, so it is never silently reshuffled) and its pixel mask. This module
holds YOLO and Pascal VOC, CSV split lists and format auto-detection (`items` the shared types); COCO and
the image-level layouts (classification folders, MVTec-AD) have modules of their own.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from PIL import Image

from defectops.components.ingest.coco import import_coco, looks_like_coco
from defectops.components.ingest.folders import DEFAULT_GOOD_NAMES, import_folders, import_mvtec
from defectops.components.ingest.items import SPLIT_ALIASES, Item, split_name
from defectops.dataset import IMAGE_SUFFIXES, DatasetError, read_labels

FORMATS = ("yolo", "voc", "coco", "folders", "mvtec")


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
    if any(looks_like_coco(p) for p in src.rglob("*.json")):
        return "coco"
    if any(p.is_dir() and any(c.suffix.lower() in IMAGE_SUFFIXES for c in p.rglob("*")) for p in src.iterdir()):
        return "folders"
    raise DatasetError(f"{src}: unknown layout; expected one of: YOLO (data.yaml + images/ + labels/), Pascal VOC "
                       "(*.xml beside images), COCO (a .json with images/annotations/categories), classification "
                       "folders (<class>/*.png, good/ok = defect-free), MVTec-AD (train/good, test/<defect>, "
                       "ground_truth/)")


def import_any(fmt: str, src: Path, good_names: list[str] | None = None) -> tuple[str, list[str], list[Item]]:
    """(format used, class names, items); `fmt` 'auto' detects it. A CSV manifest with a `split`
    column at the source's top level (see `splits_from_csv`) overrides the splits the layout implies."""
    good = good_names if good_names is not None else DEFAULT_GOOD_NAMES
    fmt = detect_format(src) if fmt == "auto" else fmt
    importers = {"yolo": import_yolo, "voc": import_voc, "coco": import_coco,
                 "folders": lambda p: import_folders(p, good), "mvtec": lambda p: import_mvtec(p, good)}
    if fmt not in importers:
        raise DatasetError(f"unknown import format '{fmt}': expected auto or one of {list(importers)}")
    names, items = importers[fmt](Path(src))
    listed = splits_from_csv(Path(src), items) if Path(src).is_dir() else {}
    if listed:
        items = [item._replace(split=listed.get(item.path, item.split)) for item in items]
    return fmt, names, items


PATH_COLUMNS = ("path", "file", "file_name", "filename", "image", "image_path")


def splits_from_csv(src: Path, items: list[Item]) -> dict[Path, str]:
    """Splits from a CSV manifest at the top of `src`: a `split` column and a path column (one of
    PATH_COLUMNS, relative to `src` or a bare file name). A row naming no imported image, or an
    unknown split, is an error naming the file and line."""
    found: dict[Path, str] = {}
    src = src.resolve()
    by_rel = {item.path.resolve().relative_to(src).as_posix(): item.path for item in items
              if item.path.resolve().is_relative_to(src)}
    by_name: dict[str, list[Path]] = {}
    for item in items:
        by_name.setdefault(item.path.name, []).append(item.path)
    for table in sorted(src.glob("*.csv")):
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            path_column = next((c for c in PATH_COLUMNS if c in columns), None)
            if "split" not in columns or path_column is None:
                continue
            original = {c.strip().lower(): c for c in reader.fieldnames}
            for line, row in enumerate(reader, start=2):
                value = (row[original[path_column]] or "").strip()
                split = split_name((row[original["split"]] or "").strip())
                if split is None:
                    raise DatasetError(f"{table}:{line}: split {row[original['split']]!r} is not one of "
                                       f"{sorted(SPLIT_ALIASES)}")
                path = by_rel.get(value)
                if path is None and len(by_name.get(Path(value).name, [])) == 1:
                    path = by_name[Path(value).name][0]
                if path is None:
                    raise DatasetError(f"{table}:{line}: {path_column} {value!r} is not an imported image "
                                       f"below {src}")
                found[path] = split
    return found


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
    splits = voc_image_sets(src)
    items = [Item(image, [(index[n], x1, y1, x2, y2) for n, x1, y1, x2, y2 in objects], splits.get(image.stem))
             for image, objects in parsed]
    return names, items


def voc_image_sets(src: Path) -> dict[str, str]:
    """Image stem -> split from VOC's ImageSets/Main/{train,val,trainval,test}.txt lists (per-class
    lists such as cat_train.txt are ignored). trainval counts as train where no train list exists."""
    lists = {p.stem.lower(): p for p in src.rglob("ImageSets/Main/*.txt") if split_name(p.stem)}
    splits: dict[str, str] = {}
    for name in ("trainval", "train", "val", "test"):  # later lists win: train/val refine trainval
        if name in lists:
            for line in lists[name].read_text().splitlines():
                if line.split():
                    splits[line.split()[0]] = split_name(name)
    return splits


def _yolo_label_path(image: Path) -> Path:
    """Ultralytics' rule: the last 'images' folder of the path becomes 'labels', suffix .txt."""
    parts = list(image.parts)
    where = max((i for i, part in enumerate(parts[:-1]) if part == "images"), default=None)
    if where is None:
        return image.with_suffix(".txt")
    parts[where] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_split_images(src: Path, data_yaml: Path, data: dict) -> dict[Path, str]:
    """image -> split from the data yaml's train/val/test entries (folders or .txt lists of images,
    relative to its `path`, to the yaml, or Roboflow-style '../train/images')."""
    base = Path(data["path"]) if data.get("path") else data_yaml.parent
    base = base if base.is_absolute() else data_yaml.parent / base
    found: dict[Path, str] = {}
    for key, split in (("train", "train"), ("val", "val"), ("valid", "val"), ("test", "test")):
        entries = data.get(key)
        for entry in [entries] if isinstance(entries, str) else entries or []:
            candidates = [base / entry, data_yaml.parent / entry, data_yaml.parent / str(entry).lstrip("./")]
            where = next((c for c in candidates if c.exists()), None)
            if where is None:
                raise DatasetError(f"{data_yaml}: {key}: '{entry}' not found (looked in {base} and "
                                   f"{data_yaml.parent})")
            if where.is_dir():
                images = [p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
            else:
                lines = [ln.strip() for ln in where.read_text().splitlines() if ln.strip()]
                images = [(where.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
            for image in images:
                image = Path(image).resolve()
                if found.get(image, split) != split:
                    raise DatasetError(f"{data_yaml}: {image} is listed in both '{found[image]}' and '{split}'")
                found[image] = split
    return found


def import_yolo(src: Path) -> tuple[list[str], list[Item]]:
    """A YOLO directory: a data yaml with `names`, images/ and labels/ trees mirroring each other.

    Splits come from the yaml's train/val/test entries, else from images/<split>/ folders."""
    src = Path(src)
    yamls = [p for p in (src / "dataset.yaml", src / "data.yaml") if p.exists()]
    if not yamls:
        raise DatasetError(f"{src}: expected dataset.yaml or data.yaml with the class 'names'")
    data = yaml.safe_load(yamls[0].read_text()) or {}
    names = data.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise DatasetError(f"{yamls[0]}: field 'names' is missing or empty")
    listed = _yolo_split_images(src, yamls[0], data)
    if listed:
        images = sorted(listed)
    else:
        images = sorted(p.resolve() for p in (src / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{src / 'images'}: no images found")
    root = src.resolve()
    items = []
    for image in images:
        if not image.is_file():
            raise DatasetError(f"{yamls[0]}: listed image {image} does not exist")
        label_file = _yolo_label_path(image)
        labels = read_labels(label_file)
        with Image.open(image) as im:
            w, h = im.size
        for b in labels:
            if not 0 <= b.cls < len(names):
                raise DatasetError(f"{label_file}: class id {b.cls} is outside 0..{len(names) - 1} ({yamls[0]} names)")
        split = listed.get(image)
        if split is None and image.is_relative_to(root / "images"):
            split = split_name(image.relative_to(root / "images").parts[0])
        items.append(Item(image, [(b.cls, *b.to_pixels(w, h)) for b in labels], split))
    return list(names), items

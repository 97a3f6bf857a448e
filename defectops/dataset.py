"""The canonical dataset format every step reads and writes.

Layout (YOLO-style, so Ultralytics trains on it directly)::

    <root>/dataset.yaml              class names (the taxonomy)
    <root>/images/<split>/<stem>.<ext>
    <root>/labels/<split>/<stem>.txt  one 'class cx cy w h' line per box, normalised; empty = defect-free
    <root>/masks/<split>/<stem>.png   optional pixel mask: 0 = background, c + 1 = class c
    <root>/manifest.csv               path, sha256, width, height, split, classes, n_boxes, group
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from defectops.errors import DefectopsError
from defectops.imaging import letterbox, read_bgr
from defectops.tiling import windows

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MANIFEST_NAME = "manifest.csv"
DATASET_YAML = "dataset.yaml"
MANIFEST_FIELDS = ("path", "sha256", "width", "height", "split", "classes", "n_boxes")
# Optional columns: `group` names the part/board/coil an image shows (images of one group share a
# split); empty = the image is its own group. Older manifests without it still read.
OPTIONAL_FIELDS = ("group",)
GOOD = "good"  # the image-level class of a defect-free image (no boxes)
PROVENANCE = "provenance.json"  # where extra images came from (feedback count, labellers); steps carry it on


class DatasetError(DefectopsError, ValueError):
    """The dataset on disk does not follow the canonical format; the message names the file."""


@dataclass(frozen=True)
class Box:
    """One labelled defect, YOLO-normalised (centre x/y, width, height in 0..1)."""

    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def to_line(self) -> str:
        return f"{self.cls} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"

    @classmethod
    def from_pixels(cls, class_id: int, x1: float, y1: float, x2: float, y2: float,
                    width: int, height: int) -> Box:
        return cls(class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                   (x2 - x1) / width, (y2 - y1) / height)

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        return ((self.cx - self.w / 2) * width, (self.cy - self.h / 2) * height,
                (self.cx + self.w / 2) * width, (self.cy + self.h / 2) * height)


def image_dir(root: Path, split: str) -> Path:
    return Path(root) / "images" / split


def label_path(root: Path, image_rel: str | Path) -> Path:
    """images/<split>/x.png -> labels/<split>/x.txt (the Ultralytics convention)."""
    rel = Path(image_rel)
    return Path(root) / "labels" / rel.parent.name / (rel.stem + ".txt")


def mask_path(root: Path, image_rel: str | Path) -> Path:
    """images/<split>/x.png -> masks/<split>/x.png: the image's pixel mask, when it has one."""
    rel = Path(image_rel)
    return Path(root) / "masks" / rel.parent.name / (rel.stem + ".png")


def read_labels(path: Path) -> list[Box]:
    """Parse a YOLO label file; a malformed line is an error naming file and line."""
    if not path.exists():
        return []
    boxes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"{path}:{n}: expected 'class cx cy w h' (5 fields), got {len(parts)}: {line!r}")
        try:
            boxes.append(Box(int(parts[0]), *map(float, parts[1:])))
        except ValueError:
            raise DatasetError(f"{path}:{n}: class must be an integer and coordinates numbers: {line!r}") from None
    return boxes


def write_labels(path: Path, boxes: list[Box]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(b.to_line() + "\n" for b in boxes))


def write_dataset_yaml(root: Path, names: list[str]) -> None:
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / DATASET_YAML).write_text(yaml.safe_dump({"names": list(names)}, sort_keys=False))


def read_names(root: Path) -> list[str]:
    path = Path(root) / DATASET_YAML
    if not path.exists():
        raise DatasetError(f"{path}: missing; a canonical dataset needs its class names (run 'defectops ingest')")
    names = (yaml.safe_load(path.read_text()) or {}).get("names")
    if isinstance(names, dict):  # Ultralytics also allows {0: name, ...}
        names = [names[k] for k in sorted(names)]
    if not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: 'names' must be a non-empty list of class names")
    return list(names)


def copy_provenance(source: Path, target: Path) -> None:
    """Carry the dataset's provenance to the next step's copy of it (absent: nothing to carry)."""
    if (Path(source) / PROVENANCE).is_file():
        shutil.copyfile(Path(source) / PROVENANCE, Path(target) / PROVENANCE)


def read_provenance(root: Path) -> dict:
    path = Path(root) / PROVENANCE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_images(root: Path):
    """Yield (split, relative path) for every image file, in a stable order."""
    for split in SPLITS:
        folder = image_dir(root, split)
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield split, path.relative_to(root).as_posix()


def build_manifest(root: Path, groups: dict[str, str] | None = None) -> list[dict]:
    """Describe every image of the dataset; unreadable images keep width/height empty.

    `groups` maps an image path to its group; without it, groups recorded in an existing
    manifest are kept.

    The validate step is the one that fails on them: building a manifest never throws away
    evidence of a bad file.
    """
    root = Path(root)
    names = read_names(root)
    if groups is None:
        groups = {r["path"]: r.get("group") or "" for r in read_manifest(root)} if (root / MANIFEST_NAME).exists() \
            else {}
    rows = []
    for split, rel in iter_images(root):
        width = height = ""
        try:
            with Image.open(root / rel) as im:
                width, height = im.size
        except Exception:  # noqa: BLE001 - recorded; validate reports the file by name
            pass
        try:
            boxes = read_labels(label_path(root, rel))
            classes = sorted({names[b.cls] if 0 <= b.cls < len(names) else f"#{b.cls}" for b in boxes})
            n_boxes = len(boxes)
        except DatasetError:
            classes, n_boxes = ["#unparseable"], -1
        rows.append({"path": rel, "sha256": sha256_file(root / rel), "width": width, "height": height,
                     "split": split, "classes": ";".join(classes), "n_boxes": n_boxes,
                     "group": groups.get(rel, "")})
    return rows


def write_manifest(root: Path, groups: dict[str, str] | None = None) -> list[dict]:
    rows = build_manifest(root, groups)
    write_manifest_rows(root, rows)
    return rows


def write_manifest_rows(root: Path, rows: list[dict]) -> None:
    with open(Path(root) / MANIFEST_NAME, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=(*MANIFEST_FIELDS, *OPTIONAL_FIELDS), extrasaction="ignore",
                                restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(root: Path) -> list[dict]:
    path = Path(root) / MANIFEST_NAME
    if not path.exists():
        raise DatasetError(f"{path}: missing; every canonical dataset has a manifest")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = set(MANIFEST_FIELDS) - set(rows[0].keys() if rows else MANIFEST_FIELDS)
    if missing:
        raise DatasetError(f"{path}: columns {sorted(missing)} missing (expected {list(MANIFEST_FIELDS)})")
    return rows


def mask_polygons(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class id, polygon as N x 2 pixel points) for every connected region of a canonical mask."""
    import cv2

    found = []
    for value in sorted(int(v) for v in np.unique(mask) if v):
        contours, _ = cv2.findContours((mask == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        found += [(value - 1, c.reshape(-1, 2)) for c in contours if len(c) >= 3]
    return found


def segment_lines(root: Path, rel: str) -> list[str] | None:
    """YOLO-seg label lines ('class x1 y1 x2 y2 ...', normalised) from the image's mask; None without one."""
    path = mask_path(root, rel)
    if not path.exists():
        return None
    with Image.open(path) as im:
        mask = np.asarray(im)
    h, w = mask.shape[:2]
    return [f"{c} " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly) for c, poly in mask_polygons(mask)]


MIN_PIECE_PX = 2.0  # a defect's piece in a tile narrower than this is not labelled there


def tile_boxes(boxes: list[Box], width: int, height: int, window: tuple[int, int, int, int]) -> list[Box]:
    """The pieces of `boxes` (normalised to the image) inside `window`, normalised to the tile."""
    x0, y0, x1, y1 = window
    pieces = []
    for b in boxes:
        bx1, by1, bx2, by2 = b.to_pixels(width, height)
        cx1, cy1, cx2, cy2 = max(bx1, x0), max(by1, y0), min(bx2, x1), min(by2, y1)
        if cx2 - cx1 >= MIN_PIECE_PX and cy2 - cy1 >= MIN_PIECE_PX:
            pieces.append(Box.from_pixels(b.cls, cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0, x1 - x0, y1 - y0))
    return pieces


def _write_tiles(root: Path, rel: str, view: Path, tile: int, overlap: float, rng: np.random.Generator) -> None:
    """Train/val images larger than a tile become tiles: every tile with a defect, and as many
    defect-free ones (at least one per image) so the model still learns the background."""
    import cv2

    image = cv2.imread(str(root / rel), cv2.IMREAD_UNCHANGED)
    height, width = image.shape[:2]
    boxes = read_labels(label_path(root, rel))
    with_defect, empty = [], []
    for window in windows(height, width, tile, overlap):
        pieces = tile_boxes(boxes, width, height, window)
        (with_defect if pieces else empty).append((window, pieces))
    keep = max(1, len(with_defect))
    chosen = [empty[i] for i in sorted(rng.choice(len(empty), min(keep, len(empty)), replace=False))] if empty else []
    stem, suffix = Path(rel).stem, ".png"
    for window, pieces in with_defect + chosen:
        x0, y0, x1, y1 = window
        tile_rel = (Path(rel).parent / f"{stem}__{x0}_{y0}{suffix}").as_posix()
        target = view / tile_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image[y0:y1, x0:x1])
        write_labels(label_path(view, tile_rel), pieces)


def build_ultralytics_view(root: Path, view: Path, segments: bool = False,
                           tiles: tuple[int, float, int] | None = None) -> Path:
    """A YOLO view of the dataset for Ultralytics at `view`; returns its data yaml.

    Ultralytics writes `labels/<split>.cache` beside the labels it reads. Pointed at the dataset
    itself, that would modify a DVC-tracked output and invalidate every later stage, so it reads
    a tree of per-image symlinks and copied label files instead. With `segments`, labels are
    YOLO-seg polygons traced from each image's mask (images without a mask keep their boxes,
    written as 4-point polygons). With `tiles` (tile side, overlap, seed), train and val images larger
    than a tile are cut into tiles (see tiling.py); the test split stays whole for the evaluate step.
    """
    root, view = Path(root).resolve(), Path(view)
    names = read_names(root)
    rows = {r["path"]: r for r in read_manifest(root)} if tiles else {}
    rng = np.random.default_rng(tiles[2] if tiles else 0)
    for split, rel in iter_images(root):
        row = rows.get(rel)
        if tiles and split != "test" and row and row["width"] and max(int(row["width"]), int(row["height"])) > tiles[0]:
            _write_tiles(root, rel, view, tiles[0], tiles[1], rng)
            continue
        link = view / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(root / rel)
        labels = label_path(root, rel)
        target = label_path(view, rel)
        lines = segment_lines(root, rel) if segments else None
        if segments and lines is None:
            lines = [f"{b.cls} " + " ".join(f"{x:.6f} {y:.6f}" for x, y in (
                (b.cx - b.w / 2, b.cy - b.h / 2), (b.cx + b.w / 2, b.cy - b.h / 2),
                (b.cx + b.w / 2, b.cy + b.h / 2), (b.cx - b.w / 2, b.cy + b.h / 2))) for b in read_labels(labels)]
        if lines is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(line + "\n" for line in lines))
        elif labels.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(labels, target)
    data = {"path": str(view.resolve()), "train": "images/train", "val": "images/val", "test": "images/test",
            "names": dict(enumerate(names))}
    data_yaml = view / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def image_class(boxes: list[Box], names: list[str]) -> str:
    """An image's single class for classification: its most frequent defect type (ties: the larger
    total area), or GOOD when it has no boxes."""
    if not boxes:
        return GOOD
    totals: dict[int, tuple[int, float]] = {}
    for b in boxes:
        count, area = totals.get(b.cls, (0, 0.0))
        totals[b.cls] = (count + 1, area + b.w * b.h)
    best = max(totals, key=lambda c: (*totals[c], -c))
    return names[best] if 0 <= best < len(names) else f"#{best}"


def classification_names(root: Path) -> list[str]:
    """The classes a classifier of this dataset predicts, in Ultralytics' (sorted folder) order."""
    names = read_names(root)
    has_good = any(r["n_boxes"] == "0" for r in read_manifest(root))
    if GOOD in names:
        raise DatasetError(f"{Path(root) / DATASET_YAML}: '{GOOD}' is reserved for defect-free images "
                           "(images without boxes); rename that class")
    return sorted([*names, GOOD] if has_good else names)


def build_classification_view(root: Path, view: Path, size: int | None = None) -> Path:
    """An Ultralytics classification view, `<view>/<split>/<class>/<image>`; returns `view`.

    With `size`, each image is letterboxed into a size x size PNG (defectops.imaging: what evaluation and the
    endpoint feed the classifier; Ultralytics' own centre crop would cut elongated parts); without, symlinks.
    Every split gets a folder for every class (empty where it has none), so class order is the
    same for all splits.
    """
    root, view = Path(root).resolve(), Path(view)
    names, classes = read_names(root), classification_names(root)
    for split in SPLITS:
        for name in classes:
            (view / split / name).mkdir(parents=True, exist_ok=True)
    for split, rel in iter_images(root):
        target = view / split / image_class(read_labels(label_path(root, rel)), names) / Path(rel).name
        if size is None:
            if not target.is_symlink():
                target.symlink_to(root / rel)
            continue
        target = target.with_name(f"{Path(rel).stem}-{Path(rel).suffix[1:]}.png")  # lossless, names stay unique
        if not target.exists():
            try:
                image = read_bgr(root / rel)
            except ValueError as exc:
                raise DatasetError(str(exc)) from None
            cv2.imwrite(str(target), letterbox(image, size)[0])
    return view


@contextlib.contextmanager
def ultralytics_view(root: Path, segments: bool = False):
    """A throw-away view (see build_ultralytics_view), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="defectops-view-") as tmp:
        yield build_ultralytics_view(root, Path(tmp), segments=segments)

"""Image-level layouts: classification folders and MVTec-AD.

Classification folders (`<root>/<class>/*.png`): a class named good/ok (any case) is
defect-free; any other class labels its images with one whole-image box, so the dataset trains a
classifier (`train.task: classify`) and still scores with the same recall-first evaluation.

MVTec-AD (`train/good`, `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`): each
connected region of a defect mask becomes a box of that defect type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from defectops.components.ingest.importers import Item, PixelBox
from defectops.dataset import IMAGE_SUFFIXES, DatasetError

GOOD_NAMES = {"good", "ok"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _size(image: Path) -> tuple[int, int]:
    try:
        with Image.open(image) as im:
            return im.size
    except Exception as exc:  # noqa: BLE001 - named in the error
        raise DatasetError(f"{image}: cannot read the image to label it ({type(exc).__name__}: {exc})") from None


def import_folders(src: Path) -> tuple[list[str], list[Item]]:
    src = Path(src)
    class_dirs = sorted(p for p in src.iterdir() if p.is_dir() and _images(p)) if src.is_dir() else []
    if not class_dirs:
        raise DatasetError(f"{src}: expected one sub-folder of images per class (<root>/<class>/*.png, "
                           "'good' or 'ok' for defect-free images)")
    names = [d.name for d in class_dirs if d.name.lower() not in GOOD_NAMES]
    if not names:
        raise DatasetError(f"{src}: only defect-free folders ({[d.name for d in class_dirs]}); "
                           "at least one defect class folder is needed")
    items = []
    for folder in class_dirs:
        good = folder.name.lower() in GOOD_NAMES
        for image in _images(folder):
            if good:
                items.append((image, []))
            else:
                w, h = _size(image)
                items.append((image, [(names.index(folder.name), 0.0, 0.0, float(w), float(h))]))
    return names, items


def boxes_from_mask(mask_path: Path, class_id: int, min_pixels: int = 4) -> list[PixelBox]:
    """One box per connected defect region (8-connectivity); specks under `min_pixels` are noise."""
    import cv2

    try:
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L")) > 0
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{mask_path}: cannot read the mask ({type(exc).__name__}: {exc})") from None
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, w, h, area in stats[1:count]:  # label 0 is the background
        if area >= min_pixels:
            boxes.append((class_id, float(x), float(y), float(x + w), float(y + h)))
    return boxes


def import_mvtec(src: Path) -> tuple[list[str], list[Item]]:
    src = Path(src)
    for needed in ("train/good", "test"):
        if not (src / needed).is_dir():
            raise DatasetError(f"{src}: not an MVTec-AD category folder, '{needed}/' is missing "
                               "(expected train/good, test/<defect>, ground_truth/<defect>/*_mask.png)")
    defect_dirs = sorted(p for p in (src / "test").iterdir() if p.is_dir() and p.name.lower() not in GOOD_NAMES)
    names = [d.name for d in defect_dirs]
    if not names:
        raise DatasetError(f"{src / 'test'}: no defect folders (test/<defect>/)")
    items: list[Item] = [(image, []) for image in _images(src / "train" / "good")]
    if (src / "test" / "good").is_dir():
        items += [(image, []) for image in _images(src / "test" / "good")]
    for class_id, folder in enumerate(defect_dirs):
        for image in _images(folder):
            mask = src / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if not mask.exists():
                raise DatasetError(f"{image}: its mask {mask} is missing (MVTec-AD: ground_truth/<defect>/"
                                   "<stem>_mask.png)")
            boxes = boxes_from_mask(mask, class_id)
            if not boxes:
                raise DatasetError(f"{mask}: the mask is empty, but {image} is filed under defect '{folder.name}'")
            items.append((image, boxes))
    return names, items

"""Facts about every image and box, computed once; the expectations decide which facts are problems.

Decoding and hashing are the real cost of validation (the expectations themselves take
milliseconds), so images are inspected in a process pool when there are many.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from defectops.dataset import SPLITS, DatasetError, iter_images, label_path, read_labels, read_manifest, sha256_file
from defectops.near_duplicates import COPY_DISTANCE, as_array, within
from defectops.parallel import map_images

# The floors under the robust spread of brightness / contrast (grey levels): a dataset of near-identical
# frames must not make one grey level of difference an outlier. Shared by the gate and its profile.
SPREAD_FLOOR = {"brightness": 2.0, "contrast": 1.0}


def inspect_image(root: Path, rel: str) -> dict:
    """Decode fully (verify() misses truncated files); measure what the expectations check."""
    path = Path(root) / rel
    row = {"path": rel, "exists": path.exists(), "decodes": False, "width": None, "height": None,
           "channels": None, "brightness": None, "contrast": None, "grey_range": None, "phash": None, "sha256": None,
           "pixels_sha256": None}
    if not row["exists"]:
        return row
    row["sha256"] = sha256_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            row["width"], row["height"] = im.size
            row["channels"] = len(im.getbands())
            # The same picture re-saved (PNG options, metadata) is a new file with the same pixels.
            row["pixels_sha256"] = hashlib.sha256(f"{im.mode}{im.size}".encode() + im.tobytes()).hexdigest()
            gray = im.convert("L")
    except Exception as exc:  # noqa: BLE001 - the reason goes into the report
        row["decode_error"] = f"{type(exc).__name__}: {exc}"
        return row
    import imagehash

    pixels = np.asarray(gray, dtype=np.float32)
    row.update(decodes=True, brightness=float(pixels.mean()), contrast=float(pixels.std()),
               grey_range=float(pixels.max() - pixels.min()), phash=str(imagehash.phash(gray)))
    return row


def inspect_all(root: Path, rels: list[str]) -> list[dict]:
    return map_images(partial(inspect_image, Path(root)), rels)


def _split_of(rel: str) -> str:
    parts = Path(rel).parts
    return parts[1] if len(parts) > 2 and parts[1] in SPLITS else "?"


# Which copy of a picture in two splits is the problem: the one in the later split. By default training
# keeps its example and evaluation loses the leaked one; `keep_held_out` keeps val and test whole and
# sets the training copy aside instead (validate.leakage: quarantine_train_copy).
TRAIN_FIRST = ("train", "val", "test")
HELD_OUT_FIRST = ("val", "test", "train")


def mark_duplicates(images: pd.DataFrame, max_distance: int, copy_distance: int = COPY_DISTANCE,
                    keep_held_out: bool = False) -> pd.DataFrame:
    """Copies and look-alikes across splits (defectops.near_duplicates says which is which).

    Columns: `duplicate_of` (same file), `near_duplicate_of` (same pixels, or a re-encoded copy: within
    `copy_distance` bits and the same labels), both on the copy in the later split; with `keep_held_out`,
    a training image's copies go to `held_out_copy_of` instead (val/test keep theirs). `lookalike_of` and
    `lookalike_distance`: within `max_distance` bits, not a copy (reported, never blocking). Exact copies
    within one split are only noted (`same_split_duplicate_of`): they weigh an example twice, nothing more."""
    images = images.copy()
    splits = HELD_OUT_FIRST if keep_held_out else TRAIN_FIRST
    order = {s: i for i, s in enumerate(splits)}
    images["_rank"] = images["split"].map(lambda s: order.get(s, len(splits)))
    images = images.sort_values(["_rank", "path"]).reset_index(drop=True)
    for column in ("duplicate_of", "same_split_duplicate_of", "near_duplicate_of", "held_out_copy_of",
                   "lookalike_of", "lookalike_distance"):
        images[column] = None

    def training_side(row: int) -> bool:  # the copy to set aside is the training one
        return keep_held_out and images.at[row, "split"] == "train"

    keeper: dict[str, int] = {}
    for i, sha in enumerate(images["sha256"]):
        if sha is None:
            continue
        if sha not in keeper:
            keeper[sha] = i
            continue
        first = keeper[sha]
        if images.at[first, "split"] == images.at[i, "split"]:
            images.at[i, "same_split_duplicate_of"] = images.at[first, "path"]
        else:
            images.at[i, "held_out_copy_of" if training_side(i) else "duplicate_of"] = images.at[first, "path"]
    hashed = images["phash"].notna() & images["duplicate_of"].isna() & images["held_out_copy_of"].isna()
    values = as_array([int(h, 16) if isinstance(h, str) else None for h in images["phash"]])
    pixels, labels = images["pixels_sha256"].tolist(), images["labels_key"].tolist()
    for later in splits[1:]:
        a = np.flatnonzero(hashed & images["split"].eq(later))
        b = np.flatnonzero(hashed & images["split"].isin(splits[:order[later]]))
        if not len(a) or not len(b):
            continue
        for row, j, d in within(values, a, b, max(max_distance, copy_distance)):
            same_pixels = pixels[row] is not None and pixels[row] == pixels[j]
            if same_pixels or (d <= copy_distance and labels[row] == labels[j]):
                column = "held_out_copy_of" if training_side(row) else "near_duplicate_of"
                if images.at[row, column] is None:
                    images.at[row, column] = images.at[j, "path"]
            elif images.at[row, "lookalike_of"] is None:
                images.at[row, "lookalike_of"], images.at[row, "lookalike_distance"] = images.at[j, "path"], d
    copied = images["near_duplicate_of"].notna() | images["held_out_copy_of"].notna()
    images.loc[copied, ["lookalike_of", "lookalike_distance"]] = None  # a copy is reported as a copy only
    return images.drop(columns="_rank")


def build_tables(root: Path, max_distance: int, copy_distance: int = COPY_DISTANCE,
                 keep_held_out: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(images, boxes, classes): one row per image on disk or in the manifest, per box, per class."""
    from defectops.dataset import read_names

    root = Path(root)
    manifest = {r["path"]: r for r in read_manifest(root)}
    rels = sorted({rel for _, rel in iter_images(root)} | set(manifest))
    image_rows, box_rows = inspect_all(root, rels), []
    names = read_names(root)
    class_images = {name: 0 for name in names}
    for row in image_rows:
        rel = row["path"]
        row["split"] = manifest[rel]["split"] if rel in manifest else _split_of(rel)
        row["in_manifest"] = rel in manifest
        row["sha256_matches_manifest"] = (row["sha256"] is None or rel not in manifest
                                          or row["sha256"] == manifest[rel]["sha256"])
        try:
            boxes = read_labels(label_path(root, rel))
            row["labels_parse"] = True
        except DatasetError as exc:
            boxes, row["labels_parse"], row["label_error"] = [], False, str(exc)
        row["n_boxes"] = len(boxes)
        # Labels compared across splits: a re-encoded copy carries its original's, a look-alike its own.
        row["labels_key"] = ";".join(sorted(f"{b.cls} {b.cx:.3f} {b.cy:.3f} {b.w:.3f} {b.h:.3f}" for b in boxes))
        for class_id in {b.cls for b in boxes}:
            if 0 <= class_id < len(names):
                class_images[names[class_id]] += 1
        for b in boxes:
            box_rows.append({"path": rel, "class_id": b.cls, "left": b.cx - b.w / 2, "top": b.cy - b.h / 2,
                             "right": b.cx + b.w / 2, "bottom": b.cy + b.h / 2, "box_width": b.w,
                             "box_height": b.h})
    images = mark_duplicates(pd.DataFrame(image_rows), max_distance, copy_distance, keep_held_out)
    classes = pd.DataFrame([{"class_name": n, "images": c} for n, c in class_images.items()])
    return images, pd.DataFrame(box_rows), classes


def isolated(values: pd.Series, radius: float, min_neighbours: int) -> pd.Series:
    """True where fewer than `min_neighbours` other images lie within `radius` of the value: a lone
    image (a black frame, a wrong exposure), not a sub-population (a second camera, a dark batch,
    binarised scans) that the dataset holds on purpose."""
    v = values.astype(float).to_numpy()
    order = np.sort(v[~np.isnan(v)])
    counts = np.searchsorted(order, v + radius, side="right") - np.searchsorted(order, v - radius, side="left") - 1
    return pd.Series(np.where(np.isnan(v), False, counts < min_neighbours), index=values.index)


def robust_spread(values: pd.Series, floor: float) -> float:
    """1.4826 x MAD (a standard deviation unmoved by outliers), at least `floor`."""
    v = values.dropna().astype(float)
    if v.empty:
        return floor
    return max(1.4826 * float((v - v.median()).abs().median()), floor)


def robust_bounds(values: pd.Series, z: float, floor: float) -> tuple[float, float]:
    """median ± z robust standard deviations: outliers relative to this dataset, unmoved by the
    outliers themselves."""
    v = values.dropna().astype(float)
    if v.empty:
        return 0.0, 255.0
    median, spread = float(v.median()), robust_spread(v, floor)
    return median - z * spread, median + z * spread

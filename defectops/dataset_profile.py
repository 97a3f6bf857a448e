"""`defectops data profile`: what a dataset holds, before anyone trains on it.

The questions a new user's data raises first: are the splits balanced, which parts (groups)
sit in which split, how big are the images, and will the defects still be visible at the
training image size? A 12 px scratch on a 2,000 px frame is under 2 px at 256: no detector sees
it, and the fix (a larger imgsz, or tiling) has to be chosen before training, not after.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from defectops.dataset import GOOD, SPLITS, label_path, read_labels, read_manifest, read_names

SMALL_BOX_PX = 8  # a defect narrower than this at the training size is at the edge of what a detector can find
SMALL_SHARE_WARNING = 0.10


def profile(root: Path, imgsz: int, png: Path | None = None) -> dict:
    """Counts per split/class/group, image sizes, and box sizes in pixels and at `imgsz` (letterboxed);
    with `png`, the figure too, from the same reading of the labels."""
    root = Path(root)
    names, rows = read_names(root), read_manifest(root)
    per_split = {}
    for split in SPLITS:
        in_split = [r for r in rows if r["split"] == split]
        classes = Counter(c for r in in_split for c in (r["classes"].split(";") if r["classes"] else [GOOD]))
        per_split[split] = {"images": len(in_split), "groups": len({r.get("group") or r["path"] for r in in_split}),
                            **{n: classes.get(n, 0) for n in [*names, GOOD]}}
    sizes = np.array([(int(r["width"]), int(r["height"])) for r in rows if r["width"]], dtype=float).reshape(-1, 2)
    box_px, box_train = [], []
    for r in rows:
        if not r["width"] or r["n_boxes"] in ("0", "-1"):
            continue
        w, h = int(r["width"]), int(r["height"])
        scale = imgsz / max(w, h)
        for b in read_labels(label_path(root, r["path"])):
            side = min(b.w * w, b.h * h)
            box_px.append(side)
            box_train.append(side * scale)
    groups = Counter(r.get("group") or r["path"] for r in rows)
    multi = [n for n in groups.values() if n > 1]
    small = float(np.mean(np.array(box_train) < SMALL_BOX_PX)) if box_train else 0.0
    report = {
        "dataset": str(root), "imgsz": imgsz, "images": len(rows), "classes": names, "per_split": per_split,
        "image_width": _stats(sizes[:, 0]), "image_height": _stats(sizes[:, 1]),
        "box_min_side_px": _stats(np.array(box_px)), "box_min_side_at_imgsz": _stats(np.array(box_train)),
        "small_box_share": small, "small_box_px": SMALL_BOX_PX,
        "near_duplicate_groups": len(multi), "images_in_groups": int(sum(multi)),
        "largest_group": max(groups.values()) if groups else 0,
        "warnings": ([f"{small:.0%} of boxes are under {SMALL_BOX_PX} px at imgsz {imgsz}: raise train.imgsz "
                      f"(about {_imgsz_for(box_px, sizes)} keeps 90 % of them at {SMALL_BOX_PX} px) or tile the "
                      "images"] if small > SMALL_SHARE_WARNING else []),
    }
    if png is not None:
        report["png"] = str(_plot(report, box_train, Path(png)))
    return report


TARGET_BOX_PX = 16  # the median defect's shorter side at the training size: the smallest head (stride 8) sees it
SIZE_FLOOR = 256  # shrinking below this (or the images' own size) saves little and loses texture


def _round_up(value: float, stride: int = 32) -> int:
    return int(np.ceil(value / stride) * stride)


def choose_size(root: Path, max_imgsz: int, tile: bool = True) -> dict:
    """`train.imgsz: auto` (and `train.tile: auto`), from the training split's boxes.

    imgsz: the smallest multiple of 32 at which the median box's shorter side is >= TARGET_BOX_PX
    (never below min(SIZE_FLOOR, the images' size)), capped at `max_imgsz`. When even the cap shrinks the
    median defect below that and `tile`, the images are tiled instead: tiles of `tile` source pixels shown
    at `max_imgsz` keep it at TARGET_BOX_PX.
    """
    root = Path(root)
    sides, longs = [], []
    for r in read_manifest(root):
        if r["split"] != "train" or not r["width"] or r["n_boxes"] in ("0", "-1"):
            continue
        w, h = int(r["width"]), int(r["height"])
        for b in read_labels(label_path(root, r["path"])):
            sides.append(max(min(b.w * w, b.h * h), 1.0))
            longs.append(max(w, h))
    if not sides:
        return {"imgsz": min(SIZE_FLOOR, max_imgsz), "tile": None, "reason": "no boxes in the training split"}
    side, long = round(float(np.median(sides)), 1), float(np.median(longs))  # labels carry 6 decimals
    needed = _round_up(TARGET_BOX_PX * long / side)
    floor = min(SIZE_FLOOR, _round_up(long), max_imgsz)
    imgsz = int(min(max(needed, floor), max_imgsz))
    reason = (f"median defect {side:.1f} px on {long:.0f} px images: {TARGET_BOX_PX} px at imgsz {needed}"
              f"{'' if needed <= max_imgsz else f', over the cap of {max_imgsz}'}")
    if needed > max_imgsz and tile:
        size = max(32, int(max_imgsz * side / TARGET_BOX_PX) // 32 * 32)
        if size < long:
            return {"imgsz": imgsz, "tile": size, "reason": f"{reason}: tiles of {size} px shown at {imgsz}",
                    "median_box_px": side}
    return {"imgsz": imgsz, "tile": None, "reason": reason, "median_box_px": side}


def _stats(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    p10, median = np.percentile(values, [10, 50])
    return {"min": float(values.min()), "p10": float(p10), "median": float(median), "max": float(values.max())}


def _imgsz_for(box_px: list[float], sizes: np.ndarray) -> int:
    """The training size at which the 10th-percentile box reaches SMALL_BOX_PX, rounded up to a stride of 32."""
    needed = SMALL_BOX_PX / max(float(np.percentile(box_px, 10)), 1e-6) * float(np.median(sizes.max(axis=1)))
    return int(np.ceil(needed / 32) * 32)


def _plot(report: dict, sides: list[float], path: Path) -> Path:
    """Images per split and class, and the spread of box sides at the training size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    labels = [*report["classes"], GOOD]
    x = np.arange(len(labels))
    for i, split in enumerate(SPLITS):
        left.bar(x + (i - 1) * 0.27, [report["per_split"][split][n] for n in labels], width=0.27, label=split)
    left.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    left.set(ylabel="images", title="Images per split and class")
    left.legend(fontsize=8)
    if sides:
        right.hist(sides, bins=np.geomspace(max(min(sides), 0.5), max(sides) + 1, 30))
        right.set_xscale("log")
    right.axvline(SMALL_BOX_PX, color="red", linestyle="--", label=f"{SMALL_BOX_PX} px")
    right.set(xlabel=f"box's shorter side at imgsz {report['imgsz']} (px)", ylabel="boxes",
              title=f"Defect size at training size ({report['small_box_share']:.0%} under {SMALL_BOX_PX} px)")
    right.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _size_line(choice: dict) -> str:
    tiles = f", tiles of {choice['tile']} px" if choice.get("tile") else ""
    return f"training size (train.imgsz, train.tile): imgsz {choice['imgsz']}{tiles} ({choice['reason']})"


def render(report: dict) -> list:
    """What the command prints for a person: rich tables and lines."""
    from rich.table import Table

    counts = Table(title=f"{report['dataset']}: {report['images']} images")
    columns = ["images", "groups", *report["classes"], GOOD]
    counts.add_column("split")
    for column in columns:
        counts.add_column(column, justify="right")
    for split, row in report["per_split"].items():
        counts.add_row(split, *(str(row[c]) for c in columns))
    sizes = Table()
    for column in ("", "min", "p10", "median", "max"):
        sizes.add_column(column, justify="right")
    for label, key in (("image width (px)", "image_width"), ("image height (px)", "image_height"),
                       ("box shorter side (px)", "box_min_side_px"),
                       (f"... at imgsz {report['imgsz']} (px)", "box_min_side_at_imgsz")):
        s = report[key]
        sizes.add_row(label, *(f"{s[k]:.1f}" if s else "-" for k in ("min", "p10", "median", "max")))
    return [counts, sizes,
            f"boxes under {report['small_box_px']} px at imgsz {report['imgsz']}: {report['small_box_share']:.1%}; "
            f"near-duplicate groups: {report['near_duplicate_groups']} ({report['images_in_groups']} images, "
            f"largest {report['largest_group']})",
            *([_size_line(report["training_size"])] if "training_size" in report else []),
            *(f"[yellow]warning:[/] {w}" for w in report["warnings"]),
            *([f"figure: {report['png']}"] if "png" in report else [])]

"""The gate's limits, learned from a dataset a person accepted (`defectops validate --profile`).

A plant's images have their own normal: binarised PCB scans are two-level, castings are dark,
backlit glass is bright, one camera gives one size. Constants tuned on one dataset flag valid
images of another. So the limits the expectations check are learned from accepted data and
stored as a small JSON file next to the data (`data/gate/profile.json`, versioned with the
project and a dependency of the validate stage); new data is judged against it. Without a
profile (a first import), the settings' constants apply, and brightness/contrast outliers must
be lone images: a sub-population is accepted, a stray black frame is not.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
from pathlib import Path

import pandas as pd

from defectops.components.validate.facts import SPREAD_FLOOR, robust_bounds
from defectops.dataset import MANIFEST_NAME, DatasetError, sha256_file

log = logging.getLogger(__name__)
KIND = "defectops-gate-profile"
FORMAT_VERSION = 1
# Learned ranges are widened so that the next batch of the same kind passes: sizes by this factor,
# box sides by this factor, counts of boxes per image by this factor.
SIZE_SLACK = 2.0
BOX_SLACK = 2.0


def learn(config, dataset: Path, images: pd.DataFrame, boxes: pd.DataFrame, names: list[str]) -> dict:
    """The limits the accepted `dataset` implies: every accepted image passes them with room to spare."""
    ok = images[images["decodes"].fillna(False).astype(bool)]
    if ok.empty:
        raise DatasetError(f"{dataset}: no decodable image to learn the gate's limits from")
    sides = pd.concat([ok["width"], ok["height"]]).astype(float)

    def span(column: str) -> list[float]:
        low, high = robust_bounds(ok[column], config.outlier_z, SPREAD_FLOOR[column])
        return [max(0.0, min(low, float(ok[column].min()))), min(255.0, max(high, float(ok[column].max())))]

    limits = {
        "min_size": max(config.min_size, math.floor(float(sides.min()) / SIZE_SLACK)),
        "max_size": min(config.max_size, math.ceil(float(sides.max()) * SIZE_SLACK)),
        "channels": sorted({int(c) for c in ok["channels"]}),
        "brightness": span("brightness"),
        "contrast": span("contrast"),
        # A blank frame is flatter than anything accepted: half the flattest accepted image, or the
        # setting's level when that is lower.
        "min_contrast": min(config.min_contrast, float(ok["contrast"].min()) / 2),
        "blank_max_range": min(config.blank_max_range, float(ok["grey_range"].min()) / 2),
        "max_boxes_per_image": int(math.ceil(max(1, int(ok["n_boxes"].max())) * BOX_SLACK)),
    }
    if not boxes.empty:
        sides = pd.concat([boxes["box_width"], boxes["box_height"]]).astype(float)
        limits["box_side"] = [float(sides.min()) / BOX_SLACK, 1.0]
    manifest = Path(dataset) / MANIFEST_NAME
    return {"kind": KIND, "format_version": FORMAT_VERSION, "classes": list(names),
            "learned_from": {"dataset": str(dataset), "images": int(len(ok)),
                             "manifest_sha256": sha256_file(manifest) if manifest.exists() else None,
                             "by": getpass.getuser(), "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
            "limits": limits}


def inline(params: dict, project: Path) -> dict:
    """`params` with validate.profile's file replaced by its content: a cloud step runs in a container
    that has the settings it was sent, not the project's files."""
    section = params.get("validate") or {}
    where = section.get("profile", "data/gate/profile.json")
    if not isinstance(where, str | Path):
        return params
    path = Path(where) if Path(where).is_absolute() else Path(project) / where
    content = json.loads(path.read_text()) if path.exists() else None
    return {**params, "validate": {**section, "profile": content}}


def write(profile: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=2) + "\n")
    return path


def load(path: Path | dict | None, names: list[str]) -> dict | None:
    """The stored (or inline) profile, or None (no file, or learned from a dataset with other classes:
    a profile of steel would wrongly judge tiles, so it is set aside with a warning)."""
    if isinstance(path, dict):
        profile, path = path, "validate.profile (inline)"
    elif path is None or not Path(path).exists():
        return None
    else:
        try:
            profile = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc}); re-create it with "
                               "'defectops validate --profile'") from None
    if not isinstance(profile, dict) or profile.get("kind") != KIND or not isinstance(profile.get("limits"), dict):
        raise DatasetError(f"{path}: not a gate profile (expected kind '{KIND}' and 'limits'); re-create it with "
                           "'defectops validate --profile'")
    if profile.get("classes") != list(names):
        log.warning("validate: %s was learned from classes %s, this dataset has %s: using the settings' defaults",
                    path, profile.get("classes"), list(names))
        return None
    return profile


def limits_for(config, images: pd.DataFrame, profile: dict | None) -> dict:
    """The one place the gate's limits come from: the profile where there is one, else the settings."""
    settings = {"min_size": config.min_size, "max_size": config.max_size, "channels": config.channels,
                "min_contrast": config.min_contrast, "blank_max_range": config.blank_max_range,
                "min_images_per_class": config.min_images_per_class,
                **{c: list(robust_bounds(images[c], config.outlier_z, floor)) for c, floor in SPREAD_FLOOR.items()},
                "source": "settings", "lone_outliers_only": True}
    if profile is None:
        return settings
    learned = {k: v for k, v in profile["limits"].items() if k != "min_images_per_class"}
    # A hand-trimmed profile without both ranges keeps the settings' ranges, judged as without a profile.
    ranges_learned = {"brightness", "contrast"} <= learned.keys()
    return {**settings, **learned, "source": "profile", "lone_outliers_only": not ranges_learned}

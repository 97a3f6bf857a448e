import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from defectops.components.ingest import synthetic
from defectops.components.ingest.importers import import_voc, import_yolo
from defectops.components.ingest.step import IngestConfig, SplitFractions, assign_splits, ingest
from defectops.dataset import DatasetError, label_path, read_labels, read_manifest, read_names

NEU_DET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "neu-det"


def test_synthetic_is_deterministic_and_seed_dependent():
    a, boxes_a = synthetic.make_image(1, 5, 64, defect_free=False)
    b, boxes_b = synthetic.make_image(1, 5, 64, defect_free=False)
    c, _ = synthetic.make_image(2, 5, 64, defect_free=False)
    assert np.array_equal(a, b) and boxes_a == boxes_b
    assert not np.array_equal(a, c)


def test_defects_are_visible_where_labelled():
    """A drawn defect changes the pixels inside its box far more than the texture noise does."""
    for index in range(12):
        clean, _ = synthetic.make_image(9, index, 128, defect_free=True)
        rng_seeded, boxes = synthetic.make_image(9, index, 128, defect_free=False)
        # Same seed and index draw the same texture first, so the difference is the defect.
        diff = np.abs(rng_seeded[..., 0].astype(int) - clean[..., 0].astype(int))
        for _, x1, y1, x2, y2 in boxes:
            inside = diff[int(y1):int(y2) + 1, int(x1):int(x2) + 1]
            assert inside.max() >= 15


def test_default_dataset_shape(tmp_path):
    metrics = ingest(IngestConfig(n_images=60, image_size=64), tmp_path / "raw")
    assert metrics["images"] == 60
    assert metrics["defect_free"] / 60 >= 0.30
    assert len(metrics["classes"]) >= 4
    assert all(n > 0 for n in metrics["per_class_images"].values())
    rows = read_manifest(tmp_path / "raw")
    for split in ("train", "val", "test"):  # both strata land in every split
        kinds = {int(r["n_boxes"]) > 0 for r in rows if r["split"] == split}
        assert kinds == {True, False}
    again = ingest(IngestConfig(n_images=60, image_size=64), tmp_path / "again")
    assert [r["sha256"] for r in read_manifest(tmp_path / "again")] == [r["sha256"] for r in rows]
    assert again["per_split"] == metrics["per_split"]


def test_split_is_stable_when_items_are_added():
    keys = [f"img{i}" for i in range(100)]
    first = dict(zip(keys, assign_splits(keys, ["x"] * 100, SplitFractions())))
    more = keys + [f"new{i}" for i in range(5)]
    second = dict(zip(more, assign_splits(more, ["x"] * 105, SplitFractions())))
    moved = sum(first[k] != second[k] for k in keys)
    assert moved <= 5  # only boundary items move, not a reshuffle


def _neu_subset(tmp_path, per_class=3):
    """A few NEU-DET images per class, in NEU-DET's own IMAGES/ + ANNOTATIONS/ layout."""
    src = tmp_path / "neu"
    (src / "IMAGES").mkdir(parents=True)
    (src / "ANNOTATIONS").mkdir()
    taken = Counter()
    for xml in sorted((NEU_DET / "ANNOTATIONS").glob("*.xml")):
        cls = xml.stem.rsplit("_", 1)[0]
        if taken[cls] < per_class:
            taken[cls] += 1
            shutil.copy(xml, src / "ANNOTATIONS")
            shutil.copy(NEU_DET / "IMAGES" / f"{xml.stem}.jpg", src / "IMAGES")
    return src


def _count_objects(folder):
    return sum(len(ET.parse(x).getroot().findall("object")) for x in folder.rglob("*.xml"))


@pytest.mark.skipif(not NEU_DET.exists(), reason="shared NEU-DET dataset not present")
def test_voc_import_of_neu_det_subset(tmp_path):
    src = _neu_subset(tmp_path)
    metrics = ingest(IngestConfig(source="voc", path=src), tmp_path / "out")
    assert metrics["images"] == 18 and len(metrics["classes"]) == 6
    assert metrics["boxes"] == _count_objects(src)
    names = read_names(tmp_path / "out")
    for row in read_manifest(tmp_path / "out"):
        boxes = read_labels(label_path(tmp_path / "out", row["path"]))
        cls = names[boxes[0].cls]
        assert row["path"].split("/")[-1].startswith(cls)  # NEU-DET names files by class
        assert all(0 <= b.cx - b.w / 2 and b.cx + b.w / 2 <= 1 for b in boxes)


@pytest.mark.e2e
@pytest.mark.skipif(not NEU_DET.exists(), reason="shared NEU-DET dataset not present")
def test_voc_import_of_full_neu_det(tmp_path):
    """The whole public dataset: 1,800 images, 6 classes, every XML box accounted for."""
    metrics = ingest(IngestConfig(source="voc", path=NEU_DET), tmp_path / "neu")
    assert metrics["images"] == 1800
    assert sorted(metrics["classes"]) == ["crazing", "inclusion", "patches", "pitted_surface",
                                          "rolled-in_scale", "scratches"]
    assert metrics["boxes"] == _count_objects(NEU_DET)
    assert sum(metrics["per_split"].values()) == 1800


def test_voc_errors_name_the_file(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation")
    with pytest.raises(DatasetError, match="a.xml.*not valid XML"):
        import_voc(tmp_path)
    (tmp_path / "a.xml").write_text("<annotation><filename>zz.jpg</filename></annotation>")
    with pytest.raises(DatasetError, match="no image found"):
        import_voc(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no Pascal VOC"):
        import_voc(empty)


def test_voc_bad_box_names_object(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text("<annotation><filename>a.png</filename><object><name>pit</name>"
                                    "<bndbox><xmin>1</xmin><ymin>x</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
                                    "</object></annotation>")
    with pytest.raises(DatasetError, match=r"a.xml: object #1 \(pit\)"):
        import_voc(tmp_path)


def test_yolo_import_round_trips_canonical(tiny_dataset, tmp_path):
    names, items = import_yolo(tiny_dataset)
    assert names == read_names(tiny_dataset)
    assert len(items) == 24
    metrics = ingest(IngestConfig(source="yolo", path=tiny_dataset), tmp_path / "copy")
    original = sum(int(r["n_boxes"]) for r in read_manifest(tiny_dataset))
    assert metrics["boxes"] == original


def test_yolo_import_rejects_unknown_class(tiny_dataset, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_dataset, src)
    label = next(p for p in (src / "labels").rglob("*.txt") if p.read_text().strip())
    label.write_text("9 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=f"{label.name}: class id 9"):
        import_yolo(src)

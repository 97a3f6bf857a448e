"""COCO, classification-folder and MVTec-AD importers, and format auto-detection, on tiny fixtures."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectops.components.ingest.coco import import_coco
from defectops.components.ingest.folders import import_folders, import_mvtec
from defectops.components.ingest.importers import detect_format
from defectops.components.ingest.step import IngestConfig, ingest
from defectops.dataset import DatasetError, label_path, read_labels, read_manifest, read_names


def _png(path: Path, size=(64, 48), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _coco(root: Path, **changes) -> Path:
    data = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                       {"id": 3, "file_name": "c.png"}],
            "categories": [{"id": 7, "name": "scratch"}, {"id": 3, "name": "dent"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 4, 16, 10]},
                            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 20, 10, 10]},
                            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 64, 48]}]}
    data.update(changes)
    for image in data["images"]:
        _png(root / "images" / image["file_name"])
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_classes_and_defect_free_images(tmp_path):
    _coco(tmp_path)
    names, items = import_coco(tmp_path)
    assert names == ["dent", "scratch"]  # category id order: 3, 7
    by_name = {i.path.name: i.boxes for i in items}
    assert by_name["a.png"] == [(1, 8.0, 4.0, 24.0, 14.0), (0, 30.0, 20.0, 40.0, 30.0)]
    assert by_name["c.png"] == []  # no annotations: defect-free


@pytest.mark.parametrize("change, message", [
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 3]}]}, r"annotations\[0\]: bbox must be 4"),
    ({"annotations": [{"image_id": 9, "category_id": 7, "bbox": [1, 2, 3, 4]}]}, r"image_id 9 is not in 'images'"),
    ({"annotations": [{"image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}]}, r"category_id 5 is not in"),
    ({"annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4]}]}, r"annotations\[0\]: missing field 'category_id'"),
    ({"categories": [{"id": 1}]}, r"categories\[0\]: missing field 'name'"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "missing.png"}], "annotations": []},
     r"image 'missing.png' not found"),
])
def test_malformed_coco_names_file_and_field(tmp_path, change, message):
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    if "missing.png" in json.dumps(change):
        (tmp_path / "images" / "missing.png").unlink(missing_ok=True)
    with pytest.raises(DatasetError, match=message) as info:
        import_coco(tmp_path)
    assert "annotations.json" in str(info.value)


def test_coco_that_is_not_json_is_named(tmp_path):
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"broken.json: not valid JSON"):
        import_coco(tmp_path / "broken.json")


def test_classification_folders(tmp_path):
    for name, n in (("OK", 3), ("crack", 2), ("stain", 1)):
        for i in range(n):
            _png(tmp_path / name / f"{name}_{i}.png", size=(40, 30))
    names, items = import_folders(tmp_path)
    assert names == ["crack", "stain"]
    boxes = {i.path.name: i.boxes for i in items}
    assert boxes["OK_0.png"] == [] and boxes["stain_0.png"] == [(1, 0.0, 0.0, 40.0, 30.0)]  # whole image
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatasetError, match="one sub-folder of images per class"):
        import_folders(tmp_path / "empty_dir")
    for p in (tmp_path / "crack").iterdir():
        p.unlink()
    for p in (tmp_path / "stain").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="only defect-free folders"):
        import_folders(tmp_path)


def _mvtec(root: Path) -> Path:
    for i in range(3):
        _png(root / "train" / "good" / f"{i:03d}.png")
    _png(root / "test" / "good" / "000.png")
    _png(root / "test" / "crack" / "000.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[5:10, 5:20] = 255  # two separate regions -> two boxes
    mask[30:40, 40:50] = 255
    mask[0, 63] = 255  # a one-pixel speck: noise, not a defect
    Image.fromarray(mask).save(_png(root / "ground_truth" / "crack" / "000_mask.png"))
    return root


def test_mvtec_boxes_from_masks_and_unique_names(tmp_path):
    names, items = import_mvtec(_mvtec(tmp_path / "bottle"))
    assert names == ["crack"]
    crack = [i.boxes for i in items if i.path.parent.name == "crack"][0]
    assert sorted(crack) == [(0, 5.0, 5.0, 20.0, 10.0), (0, 40.0, 30.0, 50.0, 40.0)]
    assert sum(1 for i in items if not i.boxes) == 4  # train/good + test/good
    metrics = ingest(IngestConfig(source="auto", path=tmp_path / "bottle"), tmp_path / "raw")
    assert metrics["format"] == "mvtec" and metrics["images"] == 5 and metrics["boxes"] == 2
    stems = [Path(r["path"]).name for r in read_manifest(tmp_path / "raw")]
    assert len(set(stems)) == 5 and "test__crack__000.png" in stems  # 000.png repeats in MVTec folders


def test_mvtec_missing_or_empty_mask_is_named(tmp_path):
    root = _mvtec(tmp_path / "bottle")
    mask = root / "ground_truth" / "crack" / "000_mask.png"
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(mask)
    with pytest.raises(DatasetError, match=r"000_mask.png: the mask is empty"):
        import_mvtec(root)
    mask.unlink()
    with pytest.raises(DatasetError, match=r"crack/000.png: its mask .*000_mask.png is missing"):
        import_mvtec(root)
    with pytest.raises(DatasetError, match="train/good/' is missing"):
        import_mvtec(tmp_path)


def test_auto_detection_names_each_layout(tmp_path):
    _coco(tmp_path / "coco")
    _mvtec(tmp_path / "mvtec")
    _png(tmp_path / "folders" / "good" / "x.png")
    _png(tmp_path / "folders" / "dent" / "y.png")
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "data.yaml").write_text("names: [a]\n")
    _png(tmp_path / "voc" / "z.png")
    (tmp_path / "voc" / "z.xml").write_text("<annotation><filename>z.png</filename></annotation>")
    for fmt in ("coco", "mvtec", "folders", "yolo", "voc"):
        assert detect_format(tmp_path / fmt) == fmt
    assert detect_format(tmp_path / "coco" / "annotations.json") == "coco"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="unknown layout; expected one of: YOLO"):
        detect_format(tmp_path / "nothing")


def test_auto_import_of_coco_and_folders_into_the_canonical_format(tmp_path):
    _coco(tmp_path / "coco")
    metrics = ingest(IngestConfig(source="auto", path=tmp_path / "coco"), tmp_path / "raw")
    assert metrics["format"] == "coco" and metrics["images"] == 3 and metrics["boxes"] == 3
    assert read_names(tmp_path / "raw") == ["dent", "scratch"]
    rows = {Path(r["path"]).name: r for r in read_manifest(tmp_path / "raw")}
    (box,) = read_labels(label_path(tmp_path / "raw", rows["b.png"]["path"]))
    assert (box.cls, box.cx, box.cy, box.w, box.h) == (0, 0.5, 0.5, 1.0, 1.0)
    again = ingest(IngestConfig(source="coco", path=tmp_path / "coco"), tmp_path / "again")
    assert again["per_split"] == metrics["per_split"]  # deterministic

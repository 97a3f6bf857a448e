"""Real datasets as they come: their own splits, images of the same part, masks, defect-free folders."""

import json
import shutil
import zlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from defectops.components.ingest.importers import import_any
from defectops.components.ingest.step import IngestConfig, ingest
from defectops.components.validate.step import ValidateConfig, validate
from defectops.dataset import build_ultralytics_view, label_path, mask_path, read_labels, read_manifest

MAGNETIC_TILE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "magnetic-tile"


def _texture(seed: int, size=(64, 64)) -> np.ndarray:
    """A distinct picture per seed (uniform images would all share one perceptual hash)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _splits(out: Path) -> dict[str, str]:
    return {Path(r["path"]).name: r["split"] for r in read_manifest(out)}


def _yolo_with_own_split(root: Path) -> dict[str, str]:
    """A Roboflow-style export: <split>/images + <split>/labels, data.yaml with '../<split>/images'."""
    expected = {}
    for split, folder, n in (("train", "train", 12), ("val", "valid", 4), ("test", "test", 5)):
        for i in range(n):
            name = f"{folder}_{i}.png"
            _save(root / folder / "images" / name, _texture(zlib.crc32(name.encode())))
            label = root / folder / "labels" / f"{folder}_{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("0 0.5 0.5 0.2 0.2\n" if i % 2 else "")
            expected[name] = split
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "val": "../valid/images",
                                                    "test": "../test/images", "nc": 1, "names": ["short"]}))
    return expected


def test_a_yolo_dataset_keeps_exactly_its_own_split(tmp_path):
    expected = _yolo_with_own_split(tmp_path / "src")
    metrics = ingest(IngestConfig(source="auto", path=tmp_path / "src"), tmp_path / "raw")
    assert _splits(tmp_path / "raw") == expected
    assert metrics["splits"] == "kept" and metrics["per_split"] == {"train": 12, "val": 4, "test": 5}
    assert metrics["per_split_class_images"]["test"] == {"short": 2}  # its class balance is reported
    resplit = ingest(IngestConfig(source="auto", path=tmp_path / "src", split_mode="resplit"), tmp_path / "re")
    assert resplit["splits"] == "resplit" and _splits(tmp_path / "re") != expected


def test_a_split_without_a_class_is_a_warning_not_a_failure(tmp_path):
    root = tmp_path / "src"
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for i in range(n):
            _save(root / "images" / split / f"{split}{i}.png", _texture(100 * len(split) + i))
            label = root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("1 0.5 0.5 0.2 0.2\n" if split == "train" and i == 0 else "0 0.4 0.4 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [dent, crack]\n")
    metrics = ingest(IngestConfig(source="yolo", path=root), tmp_path / "raw")
    assert metrics["splits"] == "kept"
    assert "split 'val' has no image of ['crack']" in metrics["warnings"]
    assert "split 'test' has no image of ['crack']" in metrics["warnings"]


def _pairs(root: Path, n_boards=30) -> None:
    """PCB-style pairs: every defective board image has its defect-free reference beside it."""
    for board in range(n_boards):
        picture = _texture(board)
        _save(root / "good" / f"board{board:03d}_ref.png", picture)
        defective = picture.copy()
        defective[20:26, 30:34] = 255  # a small defect on the same board
        _save(root / "short" / f"board{board:03d}_test.png", defective)


def _board_splits(out: Path) -> dict[str, set[str]]:
    splits = defaultdict(set)
    for name, split in _splits(out).items():
        splits[name.split("_")[0]].add(split)
    return splits


@pytest.mark.parametrize("group_by", [r"(board\d+)_", "near_duplicates"])
def test_image_and_reference_pairs_stay_in_one_split(tmp_path, group_by):
    _pairs(tmp_path / "src")
    metrics = ingest(IngestConfig(source="folders", path=tmp_path / "src", group_by=group_by), tmp_path / "raw")
    boards = _board_splits(tmp_path / "raw")
    assert len(boards) == 30 and all(len(splits) == 1 for splits in boards.values())
    assert {s for splits in boards.values() for s in splits} == {"train", "val", "test"}
    assert sum(metrics["groups_per_split"].values()) == 30
    # The gate agrees: no near-duplicate crosses two splits, so the default settings pass.
    report = validate(ValidateConfig(min_images_per_class=1, profile=None), tmp_path / "raw", tmp_path / "r")
    assert report["passed"] and report["bad_files"] == 0


def test_without_groups_pairs_are_torn_apart_and_the_gate_says_so(tmp_path):
    """The reference behaviour the grouping fixes: split image by image, pairs land in two splits. A board and
    its reference are one design, not one picture (other labels): the gate reports them and does not block."""
    _pairs(tmp_path / "src")
    ingest(IngestConfig(source="folders", path=tmp_path / "src", group_by="none"), tmp_path / "raw")
    torn = sum(len(splits) > 1 for splits in _board_splits(tmp_path / "raw").values())
    assert torn > 0
    metrics = validate(ValidateConfig(min_images_per_class=1, profile=None), tmp_path / "raw", tmp_path / "r")
    assert metrics["passed"] and metrics["lookalikes_across_splits"] == torn


def test_a_group_regex_that_misses_a_file_names_it(tmp_path):
    _pairs(tmp_path / "src", n_boards=3)
    _save(tmp_path / "src" / "good" / "stray.png", _texture(999))
    with pytest.raises(Exception, match=r"stray.png: group_by .* does not match"):
        ingest(IngestConfig(source="folders", path=tmp_path / "src", group_by=r"(board\d+)_"), tmp_path / "raw")
    with pytest.raises(ValueError, match="not a valid regex"):
        IngestConfig(group_by="(board")


def _tiles(root: Path) -> dict[str, np.ndarray]:
    """The magnetic tile layout: <class>/Imgs/<name>.jpg + <name>.png mask; MT_Free is defect-free."""
    masks = {}
    for i in range(4):
        _save(root / "MT_Free" / "Imgs" / f"free{i}.jpg", _texture(500 + i, (60, 40)))
        _save(root / "MT_Free" / "Imgs" / f"free{i}.png", np.zeros((40, 60), np.uint8))
        for cls in ("MT_Crack", "MT_Blowhole"):
            mask = np.zeros((40, 60), np.uint8)
            mask[5:15, 10:14] = 255
            mask[25:35, 30 + i:50] = 255  # a second region
            name = f"{cls.lower()}{i}"
            _save(root / cls / "Imgs" / f"{name}.jpg", _texture(600 + i + len(cls), (60, 40)))
            _save(root / cls / "Imgs" / f"{name}.png", mask)
            masks[name] = mask
    return masks


def test_masks_round_trip_from_import_to_a_yolo_seg_view(tmp_path):
    masks = _tiles(tmp_path / "src")
    fmt, names, items = import_any("auto", tmp_path / "src")
    assert fmt == "folders" and names == ["MT_Blowhole", "MT_Crack"]  # MT_Free: defect-free
    assert sum(1 for i in items if not i.boxes) == 4
    metrics = ingest(IngestConfig(source="auto", path=tmp_path / "src"), tmp_path / "raw")
    assert metrics["masks"] == 8 and metrics["boxes"] == 16  # two regions per mask, two boxes
    view = build_ultralytics_view(tmp_path / "raw", tmp_path / "view", segments=True)
    checked = 0
    for row in read_manifest(tmp_path / "raw"):
        name = Path(row["path"]).stem
        canonical = np.asarray(Image.open(mask_path(tmp_path / "raw", row["path"]))) if name in masks else None
        lines = label_path(view.parent, row["path"]).read_text().splitlines()
        if canonical is None:
            assert lines == []
            continue
        class_id = names.index("MT_Crack" if "crack" in name else "MT_Blowhole")
        assert set(np.unique(canonical)) == {0, class_id + 1}  # canonical: class + 1 on defect pixels
        drawn = np.zeros_like(canonical)
        for line in lines:
            c, *xy = line.split()
            points = (np.array(xy, float).reshape(-1, 2) * [60, 40]).round().astype(np.int32)
            cv2.fillPoly(drawn, [points], int(c) + 1)
        inter = np.logical_and(drawn > 0, canonical > 0).sum()
        assert inter / np.logical_or(drawn > 0, canonical > 0).sum() > 0.9  # the same defect pixels
        assert set(np.unique(drawn)) == set(np.unique(canonical))  # and the same class
        assert len(read_labels(label_path(tmp_path / "raw", row["path"]))) == len(lines) == 2
        checked += 1
    assert checked == 8
    clean = validate(ValidateConfig(min_images_per_class=1, profile=None), tmp_path / "raw", tmp_path / "r",
                     tmp_path / "clean")
    assert clean["passed"]
    assert len(list((tmp_path / "clean" / "masks").rglob("*.png"))) == 8  # masks travel with the clean set


def test_mvtec_keeps_train_and_test_and_carves_val_from_train(tmp_path):
    root = tmp_path / "bottle"
    for i in range(10):
        _save(root / "train" / "good" / f"{i:03d}.png", _texture(i))
    for i in range(3):
        _save(root / "test" / "good" / f"{i:03d}.png", _texture(100 + i))
        _save(root / "test" / "crack" / f"{i:03d}.png", _texture(200 + i))
        mask = np.zeros((64, 64), np.uint8)
        mask[10:20, 10:20] = 255
        _save(root / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    metrics = ingest(IngestConfig(source="mvtec", path=root), tmp_path / "raw")
    splits = _splits(tmp_path / "raw")
    assert all(splits[n] == "test" for n in splits if n.startswith("test__"))
    assert {splits[n] for n in splits if n.startswith("train__")} == {"train", "val"}
    assert metrics["splits"] == "kept; val carved out of train"
    assert "split 'train' has no image of ['crack']" in metrics["warnings"]


def test_coco_files_per_split_voc_image_sets_and_a_csv_split_column(tmp_path):
    coco = tmp_path / "coco"
    for split, ids in (("train", range(0, 6)), ("valid", range(6, 8)), ("test", range(8, 10))):
        images = [{"id": i, "file_name": f"{i}.png"} for i in ids]
        for image in images:
            _save(coco / split / image["file_name"], _texture(image["id"]))
        (coco / split / "_annotations.coco.json").write_text(json.dumps({
            "images": images, "categories": [{"id": 1, "name": "dent"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10]} for i in ids]}))
    ingest(IngestConfig(source="auto", path=coco), tmp_path / "c")
    assert _splits(tmp_path / "c") == {f"{i}.png": "train" if i < 6 else "val" if i < 8 else "test" for i in range(10)}

    voc = tmp_path / "voc"
    for i in range(8):
        _save(voc / "JPEGImages" / f"{i}.png", _texture(300 + i))
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.png</filename><object><name>pit</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
            "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("0\n1\n2\n3\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("4\n5\n")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("6\n7\n")
    ingest(IngestConfig(source="voc", path=voc), tmp_path / "v")
    assert _splits(tmp_path / "v") == {f"{i}.png": "train" if i < 4 else "val" if i < 6 else "test" for i in range(8)}

    (voc / "splits.csv").write_text("file,split\n0.png,test\n7.png,train\n")  # the manifest overrides the lists
    ingest(IngestConfig(source="voc", path=voc), tmp_path / "v2")
    assert _splits(tmp_path / "v2")["0.png"] == "test" and _splits(tmp_path / "v2")["7.png"] == "train"
    (voc / "splits.csv").write_text("file,split\n0.png,holdout\n")
    with pytest.raises(Exception, match=r"splits.csv:2: split 'holdout' is not one of"):
        ingest(IngestConfig(source="voc", path=voc), tmp_path / "v3")


@pytest.mark.skipif(not MAGNETIC_TILE.exists(), reason="shared magnetic tile dataset not present")
def test_the_magnetic_tile_set_imports_with_masks_and_passes_the_default_gate(tmp_path):
    """A subset of the real set, default settings except the path: grouped, masked, accepted."""
    src = tmp_path / "tiles"
    for folder in sorted(MAGNETIC_TILE.glob("MT_*")):
        jpgs = sorted((folder / "Imgs").glob("*.jpg"))[:40 if folder.name == "MT_Free" else 12]
        for jpg in jpgs:
            (src / folder.name / "Imgs").mkdir(parents=True, exist_ok=True)
            shutil.copy(jpg, src / folder.name / "Imgs")
            shutil.copy(jpg.with_suffix(".png"), src / folder.name / "Imgs")
    metrics = ingest(IngestConfig(source="auto", path=src), tmp_path / "raw")
    assert metrics["classes"] == ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"]
    assert metrics["defect_free"] == 40 and metrics["masks"] >= 55
    assert sum(metrics["groups_per_split"].values()) < metrics["images"]  # shots of one tile are grouped
    result = validate(ValidateConfig(profile=None), tmp_path / "raw", tmp_path / "r", tmp_path / "clean")
    assert result["passed"] and result["bad_files"] == 0


def _damage(dataset: Path) -> set[str]:
    """Two truncated images, a box outside its image, a train image copied into test: what a bad
    export or a careless merge leaves. Returns the paths the gate must name."""
    rows = read_manifest(dataset)
    train = [r["path"] for r in rows if r["split"] == "train"]
    with_box = [r["path"] for r in rows if r["split"] != "train" and int(r["n_boxes"]) > 0]
    for rel in train[:2]:
        data = (dataset / rel).read_bytes()
        (dataset / rel).write_bytes(data[:len(data) // 3])
    label_path(dataset, with_box[0]).write_text("0 0.9 0.5 0.4 0.2\n")  # reaches x = 1.1
    copy = f"images/test/copy_{Path(train[5]).name}"
    shutil.copyfile(dataset / train[5], dataset / copy)
    shutil.copyfile(label_path(dataset, train[5]), label_path(dataset, copy))
    from defectops.dataset import write_manifest

    write_manifest(dataset)
    return {train[0], train[1], with_box[0], copy}


def _tile_subset(tmp_path: Path) -> Path:
    src = tmp_path / "tiles"
    for folder in sorted(MAGNETIC_TILE.glob("MT_*")):
        for jpg in sorted((folder / "Imgs").glob("*.jpg"))[:30 if folder.name == "MT_Free" else 8]:
            (src / folder.name / "Imgs").mkdir(parents=True, exist_ok=True)
            shutil.copy(jpg, src / folder.name / "Imgs")
            shutil.copy(jpg.with_suffix(".png"), src / folder.name / "Imgs")
    return src


@pytest.mark.parametrize("source", ["synthetic", "magnetic-tile"])
def test_a_damaged_copy_is_rejected_naming_exactly_the_damaged_files(tmp_path, source):
    if source == "magnetic-tile":
        if not MAGNETIC_TILE.exists():
            pytest.skip("shared magnetic tile dataset not present")
        config = IngestConfig(source="auto", path=_tile_subset(tmp_path))
    else:
        config = IngestConfig(n_images=80, image_size=96)
    ingest(config, tmp_path / "raw")
    damaged = _damage(tmp_path / "raw")
    with pytest.raises(Exception) as err:
        validate(ValidateConfig(min_images_per_class=1, profile=None), tmp_path / "raw", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["bad_files"]) == damaged
    assert all(path in str(err.value) for path in damaged)
    assert "duplicate_across_splits" in report["blocking"]

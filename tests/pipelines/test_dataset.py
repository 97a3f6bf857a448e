import pytest

from defectops.dataset import Box, DatasetError, read_labels, read_manifest, write_labels
from defectops.lineage import dvc_dir_md5


def test_labels_round_trip(tmp_path):
    boxes = [Box(0, 0.5, 0.5, 0.2, 0.1), Box(3, 0.1, 0.9, 0.05, 0.05)]
    write_labels(tmp_path / "a.txt", boxes)
    assert read_labels(tmp_path / "a.txt") == boxes
    assert read_labels(tmp_path / "missing.txt") == []


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.2", "x 0.5 0.5 0.2 0.1", "0 0.5 a 0.2 0.1"])
def test_malformed_label_names_file_and_line(tmp_path, line):
    path = tmp_path / "bad.txt"
    path.write_text("0 0.5 0.5 0.2 0.1\n" + line + "\n")
    with pytest.raises(DatasetError, match=r"bad.txt:2"):
        read_labels(path)


def test_pixel_conversion_is_inverse():
    box = Box.from_pixels(2, 10, 20, 50, 60, 100, 200)
    assert box.to_pixels(100, 200) == pytest.approx((10, 20, 50, 60))


def test_manifest_describes_every_image(tiny_dataset):
    rows = read_manifest(tiny_dataset)
    assert len(rows) == 24
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows:
        assert len(r["sha256"]) == 64 and int(r["width"]) == 64 and int(r["height"]) == 64
        assert (int(r["n_boxes"]) == 0) == (r["classes"] == "")


def test_dataset_version_changes_with_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one")
    before = dvc_dir_md5(tmp_path / "d")
    assert before.endswith(".dir")
    assert dvc_dir_md5(tmp_path / "d") == before
    (tmp_path / "d" / "a.txt").write_text("two")
    assert dvc_dir_md5(tmp_path / "d") != before

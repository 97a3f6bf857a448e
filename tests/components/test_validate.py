import json
import shutil
import subprocess
import sys

import pytest

from defectops.components.validate.step import DataInvalid, ValidateConfig, validate
from defectops.dataset import label_path, read_manifest


@pytest.fixture
def dataset(tiny_dataset, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(tiny_dataset, copy)
    return copy


def test_clean_dataset_passes(dataset, tmp_path):
    metrics = validate(ValidateConfig(), dataset, tmp_path / "report")
    assert metrics["passed"] and metrics["bad_files"] == 0 and metrics["images"] == 24
    assert json.loads((tmp_path / "report" / "report.json").read_text())["passed"] is True


def test_every_problem_is_named(dataset, tmp_path):
    rows = read_manifest(dataset)
    corrupt = dataset / rows[0]["path"]
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    stray = dataset / "images" / "train" / "stray.png"  # a file nobody put in the manifest
    stray.write_bytes(b"not an image at all")
    with_box = next(r for r in rows[1:] if int(r["n_boxes"]) > 0)
    label_path(dataset, with_box["path"]).write_text("0 0.95 0.5 0.3 0.2\n")  # sticks out on the right
    with_class = next(r for r in rows[1:] if int(r["n_boxes"]) > 0 and r is not with_box)
    label_path(dataset, with_class["path"]).write_text("7 0.5 0.5 0.2 0.2\n")  # not in the taxonomy

    with pytest.raises(DataInvalid) as err:
        validate(ValidateConfig(), dataset, tmp_path / "report")
    message = str(err.value)
    for path in (rows[0]["path"], "images/train/stray.png", with_box["path"], with_class["path"]):
        assert path in message
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] is False
    failed = {(f["table"], f["column"]) for f in report["failures"]}
    assert {("images", "decodes"), ("images", "in_manifest"), ("images", "sha256_matches_manifest"),
            ("boxes", "right"), ("boxes", "class_id")} <= failed
    assert corrupt.exists() and stray.exists()  # evidence is never deleted


def test_size_limits_come_from_config(dataset, tmp_path):
    with pytest.raises(DataInvalid, match="width"):
        validate(ValidateConfig(min_size=100), dataset, tmp_path / "report")


def test_cli_exit_code_says_data_invalid(dataset, tmp_path):
    bad = dataset / read_manifest(dataset)[0]["path"]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "validate", "--dataset", str(dataset),
                             "--report", str(tmp_path / "r"), "--params", str(tmp_path / "none.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    assert bad.relative_to(dataset).as_posix() in result.stderr

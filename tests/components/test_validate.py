import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from defectops.components.ingest.step import IngestConfig, ingest
from defectops.components.validate.step import DataInvalid, ValidateConfig, validate
from defectops.dataset import label_path, read_manifest, write_manifest

NEU_DET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "neu-det"
TINY = ValidateConfig(min_images_per_class=1)  # 24 images: a rare class has only a couple


@pytest.fixture
def dataset(tiny_dataset, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(tiny_dataset, copy)
    return copy


def _problems(report_dir: Path) -> dict[str, list[str]]:
    report = json.loads((report_dir / "report.json").read_text())
    return {q["path"]: q["problems"] for q in report["quarantined"]}


def test_clean_dataset_passes_and_is_passed_on_whole(dataset, tmp_path):
    metrics = validate(TINY, dataset, tmp_path / "report", tmp_path / "clean", tmp_path / "quarantine")
    assert metrics["passed"] and metrics["bad_files"] == 0 and metrics["images"] == 24
    assert metrics["clean_images"] == 24
    assert [r["sha256"] for r in read_manifest(tmp_path / "clean")] == [r["sha256"] for r in read_manifest(dataset)]
    assert json.loads((tmp_path / "report" / "report.json").read_text())["passed"] is True
    assert "passed: all expectations met" in (tmp_path / "report" / "report.html").read_text()
    assert json.loads((tmp_path / "quarantine" / "reasons.json").read_text()) == []


def test_every_problem_is_named_and_quarantined(dataset, tmp_path):
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
        validate(TINY, dataset, tmp_path / "report", tmp_path / "clean", tmp_path / "quarantine")
    message = str(err.value)
    for path in (rows[0]["path"], "images/train/stray.png", with_box["path"], with_class["path"]):
        assert path in message
    assert "4 bad file(s) = 16.00% > limit 1.00%" in message  # 4 of 25 (24 + the stray)
    problems = _problems(tmp_path / "report")
    assert "undecodable" in problems[rows[0]["path"]] and "not_in_manifest" in problems["images/train/stray.png"]
    assert problems[with_box["path"]] == ["box_outside_image"] and problems[with_class["path"]] == ["unknown_class"]
    for path in problems:  # set aside with their labels, and still where they were
        assert (tmp_path / "quarantine" / path).read_bytes() == (dataset / path).read_bytes()
    assert (label_path(tmp_path / "quarantine", with_box["path"])).exists()
    assert not (tmp_path / "clean").exists()  # a rejected dataset has no clean copy to train on
    html = (tmp_path / "report" / "report.html").read_text()
    assert "rejected" in html and "images/train/stray.png" in html


def test_a_few_bad_files_are_quarantined_and_the_rest_passes(dataset, tmp_path):
    rows = read_manifest(dataset)
    bad = dataset / rows[3]["path"]
    bad.write_bytes(bad.read_bytes()[:80])
    metrics = validate(ValidateConfig(min_images_per_class=1, max_bad_fraction=0.1), dataset, tmp_path / "r",
                       tmp_path / "clean", tmp_path / "q")
    assert metrics["passed"] and metrics["bad_files"] == 1 and metrics["clean_images"] == 23
    assert rows[3]["path"] not in {r["path"] for r in read_manifest(tmp_path / "clean")}
    assert not (tmp_path / "clean" / rows[3]["path"]).exists() and (tmp_path / "q" / rows[3]["path"]).exists()
    assert bad.exists()  # the imported dataset is never changed


def _add_to_split(dataset: Path, source_rel: str, split: str, name: str, transform=None) -> str:
    target = f"images/{split}/{name}"
    if transform is None:
        shutil.copyfile(dataset / source_rel, dataset / target)
    else:
        with Image.open(dataset / source_rel) as im:
            transform(im.convert("RGB")).save(dataset / target)
    shutil.copyfile(label_path(dataset, source_rel), label_path(dataset, target))
    write_manifest(dataset)
    return target


def test_leakage_between_splits_blocks_and_names_the_later_copy(dataset, tmp_path):
    rows = read_manifest(dataset)
    train = [r["path"] for r in rows if r["split"] == "train"]
    exact = _add_to_split(dataset, train[0], "test", "leaked_exact.png")
    near = _add_to_split(dataset, train[1], "val", "leaked_near.png",
                         lambda im: ImageEnhance.Brightness(im).enhance(1.03))  # re-saved, slightly brighter
    config = ValidateConfig(min_images_per_class=1, max_bad_fraction=0.5)  # the share is not what fails it
    with pytest.raises(DataInvalid, match="blocking problem.*duplicate_across_splits.*near_duplicate_across_splits"):
        validate(config, dataset, tmp_path / "r")
    problems = _problems(tmp_path / "r")
    assert problems == {exact: ["duplicate_across_splits"], near: ["near_duplicate_across_splits"]}
    details = {q["path"]: q["detail"] for q in json.loads((tmp_path / "r" / "report.json").read_text())["quarantined"]}
    assert details[exact] == f"same file as {train[0]}" and details[near] == f"a copy of {train[1]}"


def test_too_few_examples_of_a_class_blocks_naming_it(dataset, tmp_path):
    with pytest.raises(DataInvalid, match="too_few_examples") as err:
        validate(ValidateConfig(min_images_per_class=50), dataset, tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    (failure,) = [f for f in report["failures"] if f["problem"] == "too_few_examples"]
    assert failure["classes"] and failure["classes"][0] in str(err.value)


def test_blank_frames_odd_channels_and_size_limits(dataset, tmp_path):
    rows = read_manifest(dataset)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(dataset / rows[0]["path"])  # camera capped
    Image.fromarray(np.full((64, 64, 4), 120, np.uint8), "RGBA").save(dataset / rows[1]["path"])
    write_manifest(dataset)
    with pytest.raises(DataInvalid):
        validate(TINY, dataset, tmp_path / "r")
    problems = _problems(tmp_path / "r")
    assert {"blank_image", "brightness_outlier"} <= set(problems[rows[0]["path"]])
    assert "channels" in problems[rows[1]["path"]]
    with pytest.raises(DataInvalid, match="image_size"):
        validate(ValidateConfig(min_size=100, min_images_per_class=1), dataset, tmp_path / "r2")


def test_unknown_blocking_problem_is_a_config_error():
    with pytest.raises(ValueError, match="unknown problems \\['leaks'\\]"):
        ValidateConfig(blocking=["leaks"])


@pytest.mark.e2e
def test_cli_exit_code_says_data_invalid(dataset, tmp_path):
    bad = dataset / read_manifest(dataset)[0]["path"]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    params = tmp_path / "params.yaml"
    params.write_text("validate: {min_images_per_class: 1}\n")
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "validate", "--dataset", str(dataset),
                             "--report", str(tmp_path / "r"), "--params", str(params)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    assert bad.relative_to(dataset).as_posix() in result.stderr


@pytest.mark.e2e
@pytest.mark.skipif(not NEU_DET.exists(), reason="shared NEU-DET dataset not present")
def test_neu_det_validates_clean_and_a_damaged_copy_is_rejected_with_every_problem(tmp_path):
    clean = validate(ValidateConfig(), _neu_import(NEU_DET, tmp_path / "neu"), tmp_path / "r0", tmp_path / "v0")
    assert clean["passed"] and clean["images"] == 1800 and clean["bad_files"] == 0 and clean["clean_images"] == 1800

    src = tmp_path / "neu-copy"  # the user's folder, with 3 corrupt JPEGs and 2 boxes outside their image
    shutil.copytree(NEU_DET, src, ignore=shutil.ignore_patterns("*.md"))
    corrupt = ["crazing_10.jpg", "inclusion_20.jpg", "scratches_30.jpg"]
    for name in corrupt:
        jpeg = src / "IMAGES" / name
        jpeg.write_bytes(jpeg.read_bytes()[:700])  # cut off mid-scan
    for stem in ("patches_40", "pitted_surface_50"):
        xml = src / "ANNOTATIONS" / f"{stem}.xml"
        tree = ET.parse(xml)
        tree.getroot().find("object/bndbox/xmax").text = "260"  # the images are 200 px wide
        tree.write(xml)
    dataset = _neu_import(src, tmp_path / "damaged")
    rows = read_manifest(dataset)
    source = next(r for r in rows if r["split"] == "train" and "rolled-in_scale" in r["path"])
    duplicate = _add_to_split(dataset, source["path"], "test", "rolled-in_scale_copy.jpg")
    before = {p: p.stat().st_size for p in dataset.rglob("*") if p.is_file()}

    with pytest.raises(DataInvalid) as err:
        validate(ValidateConfig(), dataset, tmp_path / "r1", tmp_path / "v1", tmp_path / "quarantine")
    by_name = {Path(p).name: problems for p, problems in _problems(tmp_path / "r1").items()}
    assert len(by_name) == 6, by_name
    for name in corrupt:
        assert "undecodable" in by_name[name]
    assert by_name["patches_40.jpg"] == by_name["pitted_surface_50.jpg"] == ["box_outside_image"]
    assert by_name[Path(duplicate).name] == ["duplicate_across_splits"]
    for name in by_name:
        assert name in str(err.value)
    assert len(list((tmp_path / "quarantine" / "images").rglob("*.jpg"))) == 6
    after = {p: p.stat().st_size for p in dataset.rglob("*") if p.is_file()}
    assert after == before  # nothing deleted or changed in the dataset


def _neu_import(src: Path, out: Path) -> Path:
    ingest(IngestConfig(source="voc", path=src), out)
    return out


def _two_level(seed: int) -> np.ndarray:
    """A binarised scan: white with a few thin dark traces (grey-level SD below 2, full range)."""
    img = np.full((256, 256), 255, np.uint8)
    img[10 + seed, 5:8] = 0
    return img


def _dark(seed: int) -> np.ndarray:
    """A dark casting: mean ~6, SD ~1.5, with a faint structure reaching grey 40."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(6, 1.2, (64, 64)), 0, 255).astype(np.uint8)
    img[30:33, 10 + seed:20 + seed] = 40
    return img


def _add_images(dataset: Path, images: dict[str, np.ndarray]) -> list[str]:
    added = []
    for name, pixels in images.items():
        rel = f"images/train/{name}.png"
        Image.fromarray(pixels).save(dataset / rel)
        label_path(dataset, rel).write_text("")
        added.append(rel)
    write_manifest(dataset)
    return added


def test_two_level_and_dark_images_are_neither_blank_nor_outliers(dataset, tmp_path):
    """Sub-populations a plant holds on purpose pass the default settings; a lone black frame does not."""
    _add_images(dataset, {**{f"scan{i}": _two_level(i) for i in range(4)},
                          **{f"casting{i}": _dark(i) for i in range(4)}})
    black = _add_images(dataset, {"capped": np.zeros((64, 64), np.uint8)})[0]
    with pytest.raises(DataInvalid):
        validate(ValidateConfig(min_images_per_class=1, profile=None), dataset, tmp_path / "r")
    problems = _problems(tmp_path / "r")
    assert set(problems) == {black}, problems  # none of the 8 valid images is quarantined
    assert "blank_image" in problems[black]  # near the castings' brightness, but flat: blank


def test_a_profile_learned_from_accepted_data_judges_new_data(dataset, tmp_path):
    from defectops.components.validate.step import learn_profile

    config = ValidateConfig(min_images_per_class=1, profile=tmp_path / "gate" / "profile.json")
    validate(config, dataset, tmp_path / "r0", tmp_path / "accepted")
    learned = learn_profile(config, tmp_path / "accepted")
    stored = json.loads(config.profile.read_text())
    assert stored == learned and stored["learned_from"]["images"] == 24
    low, high = stored["limits"]["brightness"]
    assert 0 <= low < high <= 255

    assert validate(config, dataset, tmp_path / "r1")["passed"]  # the same kind of data passes
    # Three over-exposed frames: a sub-population the defaults would let through, outside what was accepted.
    rows = read_manifest(dataset)
    bright = []
    for row in rows[:3]:
        with Image.open(dataset / row["path"]) as im:
            ImageEnhance.Brightness(im.convert("RGB")).enhance(3.0).save(dataset / row["path"])
        bright.append(row["path"])
    write_manifest(dataset)
    assert validate(ValidateConfig(min_images_per_class=1, max_bad_fraction=0.2, profile=None), dataset,
                    tmp_path / "r2")["bad_files"] == 0
    with pytest.raises(DataInvalid):
        validate(config, dataset, tmp_path / "r3")
    problems = _problems(tmp_path / "r3")
    assert set(problems) == set(bright) and all("brightness_outlier" in p for p in problems.values())
    report = json.loads((tmp_path / "r3" / "report.json").read_text())
    assert report["limits"]["source"] == "profile"
    assert f"limits: learned from accepted data ({config.profile})" in (tmp_path / "r3" / "report.txt").read_text()


def test_a_profile_of_other_classes_is_set_aside_and_a_broken_one_is_named(dataset, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"kind": "defectops-gate-profile", "classes": ["other"], "limits": {}}))
    result = validate(ValidateConfig(min_images_per_class=1, profile=profile), dataset, tmp_path / "r")
    assert result["passed"]
    assert json.loads((tmp_path / "r" / "report.json").read_text())["limits"]["source"] == "settings"
    assert "no learned profile yet" in (tmp_path / "r" / "report.html").read_text()
    profile.write_text("{not json")
    with pytest.raises(ValueError, match="profile.json: not valid JSON"):
        validate(ValidateConfig(min_images_per_class=1, profile=profile), dataset, tmp_path / "r")


def test_cli_learns_a_profile(dataset, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"validate: {{min_images_per_class: 1, profile: {tmp_path / 'gate.json'}}}\n")
    result = subprocess.run([sys.executable, "-m", "defectops.cli", "validate", "--dataset", str(dataset),
                             "--profile", "--params", str(params)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "gate.json").read_text())["limits"]["channels"] == [3]

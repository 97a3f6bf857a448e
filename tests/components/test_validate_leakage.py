"""Leakage on a line's own data: a copy of one picture in two splits blocks; look-alikes of one design do not."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from defectops.components.ingest.step import IngestConfig, ingest
from defectops.components.ingest.synthetic_boards import write_paired_source
from defectops.components.validate.step import DataInvalid, ValidateConfig, validate
from defectops.dataset import label_path, read_manifest, write_manifest


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_split(dataset: Path) -> dict[str, set[str]]:
    splits: dict[str, set[str]] = {}
    for row in read_manifest(dataset):
        splits.setdefault(row["split"], set()).add(row["path"])
    return splits


def _imported(tmp_path: Path, copies: bool = False) -> Path:
    metrics = ingest(IngestConfig(source="auto", path=write_paired_source(tmp_path / "src", copies=copies)),
                     tmp_path / "raw")
    assert metrics["splits"] == "kept"
    return tmp_path / "raw"


def _named(report: Path) -> dict[str, list[str]]:
    return {q["path"]: q["problems"] for q in json.loads(report.read_text())["quarantined"]}


def test_templates_and_their_defective_boards_across_a_published_split_pass_at_defaults(tmp_path):
    raw = _imported(tmp_path)
    metrics = validate(ValidateConfig(profile=None), raw, tmp_path / "r", tmp_path / "clean")
    assert metrics["passed"] and metrics["bad_files"] == 0
    assert _by_split(tmp_path / "clean") == _by_split(raw)  # every split kept as published
    report = json.loads((tmp_path / "r/report.json").read_text())
    # 16 of the 20 designs have their template and defective board in two splits; the pairs whose hashes are
    # close are reported as look-alikes, the closest within the copy distance (only their labels differ).
    alike = report["lookalikes"]
    assert metrics["lookalikes_across_splits"] == alike["count"] and 8 <= alike["count"] <= 16
    assert alike["examples"][0]["bits"] <= ValidateConfig().copy_max_distance
    assert all(Path(e["path"]).name[:3] == Path(e["looks_like"]).name[:3] for e in alike["examples"])  # one design
    assert "look-alikes across splits" in (tmp_path / "r/report.txt").read_text()


def test_a_byte_copy_and_a_reencoded_copy_across_splits_still_fail_closed_naming_exactly_them(tmp_path):
    raw = _imported(tmp_path, copies=True)
    with pytest.raises(DataInvalid, match="duplicate_across_splits.*near_duplicate_across_splits") as err:
        validate(ValidateConfig(profile=None), raw, tmp_path / "r", tmp_path / "clean")
    copied = next(p for p in _by_split(raw)["test"] if "copied_template" in p)
    reencoded = next(p for p in _by_split(raw)["val"] if "reencoded_short" in p)
    assert _named(tmp_path / "r/report.json") == {copied: ["duplicate_across_splits"],
                                                  reencoded: ["near_duplicate_across_splits"]}
    # The report ends with the way forward that keeps the published test split, and what it costs.
    steps = json.loads((tmp_path / "r/report.json").read_text())["next_steps"]
    assert steps == [step for step in steps if step]  # no empty lines
    assert any("validate.leakage: quarantine_train_copy" in s and "2 train image(s) set aside" in s for s in steps)
    assert "next step:" in str(err.value) and not (tmp_path / "clean").exists()


def test_quarantine_train_copy_keeps_val_and_test_byte_for_byte_and_sets_the_train_copies_aside(tmp_path):
    raw = _imported(tmp_path, copies=True)
    config = ValidateConfig(profile=None, leakage="quarantine_train_copy")
    metrics = validate(config, raw, tmp_path / "r", tmp_path / "clean", tmp_path / "q")
    assert metrics["passed"] and metrics["set_aside_train_copies"] == 2 and metrics["bad_files"] == 0
    before, after = _by_split(raw), _by_split(tmp_path / "clean")
    for split in ("val", "test"):
        assert after[split] == before[split]
        assert all(_sha(tmp_path / "clean" / p) == _sha(raw / p) for p in after[split])
    originals = {p for p in before["train"] if "d000_template" in p or "d001_short" in p}
    assert before["train"] - after["train"] == originals
    assert _named(tmp_path / "r/report.json") == {p: ["train_copy_of_held_out"] for p in originals}
    assert all((tmp_path / "q" / p).exists() for p in originals)  # set aside, not deleted
    assert "2 train image(s) copying val/test images set aside" in json.loads(
        (tmp_path / "r/report.json").read_text())["verdict"]


def test_a_copy_between_val_and_test_still_blocks_when_train_copies_are_set_aside(tmp_path):
    raw = _imported(tmp_path)
    val = sorted(p for p in _by_split(raw)["val"] if p.endswith(".png"))[0]
    leaked = raw / val.replace("/val/", "/test/").replace(".png", "_again.png")
    shutil.copyfile(raw / val, leaked)
    shutil.copyfile(label_path(raw, val), label_path(raw, str(leaked.relative_to(raw))))
    write_manifest(raw)
    with pytest.raises(DataInvalid, match="duplicate_across_splits"):
        validate(ValidateConfig(profile=None, leakage="quarantine_train_copy"), raw, tmp_path / "r")
    steps = json.loads((tmp_path / "r/report.json").read_text())["next_steps"]
    assert any("between val and test" in s and "split_mode: resplit" in s for s in steps)

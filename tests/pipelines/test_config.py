from pathlib import Path

import pytest

from defectops.components.ingest.step import IngestConfig
from defectops.components.train.step import TrainConfig
from defectops.config import ConfigError, load_step_config


def test_defaults_when_params_file_is_absent(tmp_path):
    config = load_step_config(TrainConfig, "train", tmp_path / "missing.yaml")
    assert config.model == "yolov8n.yaml" and config.epochs > 0


def test_error_names_file_section_field_and_value(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: -3\n  imgsz: 250\n")
    with pytest.raises(ConfigError) as err:
        load_step_config(TrainConfig, "train", params)
    message = str(err.value)
    assert str(params) in message
    assert "train.epochs" in message and "-3" in message
    assert "train.imgsz" in message and "multiple of 32" in message


def test_unknown_key_is_refused_not_ignored(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epoch: 5\n")
    with pytest.raises(ConfigError, match="train.epoch"):
        load_step_config(TrainConfig, "train", params)


def test_cross_field_rules(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  source: voc\n")
    with pytest.raises(ConfigError, match="needs 'path'"):
        load_step_config(IngestConfig, "ingest", params)
    params.write_text("ingest:\n  split: {train: 0.8, val: 0.3, test: 0.1}\n")
    with pytest.raises(ConfigError, match="must be 1"):
        load_step_config(IngestConfig, "ingest", params)


def test_repository_params_file_has_only_known_sections_and_each_validates():
    from defectops.config import SECTIONS, read_params, validate_params

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    configs = validate_params(params)
    raw = read_params(params)
    assert set(raw) == set(SECTIONS) == set(configs)  # every section read by a config, none spare


def test_a_misspelt_section_is_refused_with_the_known_ones(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("trian:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"params.yaml: unknown section\(s\) trian; expected some of ingest, data"):
        load_step_config(TrainConfig, "train", params)

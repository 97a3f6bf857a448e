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


def test_repository_params_file_is_valid():
    """Every section of the shipped params.yaml validates against its step's config."""
    from defectops.components.augment.step import AugmentConfig
    from defectops.components.deploy.step import DeployConfig
    from defectops.components.evaluate.step import EvaluateConfig
    from defectops.components.monitor.step import MonitorConfig
    from defectops.components.register.step import RegisterConfig
    from defectops.components.tune.step import TuneConfig
    from defectops.components.validate.step import ValidateConfig

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    for model, section in [(IngestConfig, "ingest"), (ValidateConfig, "validate"), (AugmentConfig, "augment"),
                           (TrainConfig, "train"), (EvaluateConfig, "evaluate"), (RegisterConfig, "register"),
                           (DeployConfig, "deploy"), (MonitorConfig, "monitor"), (TuneConfig, "tune")]:
        assert isinstance(load_step_config(model, section, params), model)

"""One validated config object per step, read from `params.yaml` and checked once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from defectops.errors import DefectopsError

DEFAULT_PARAMS = Path("params.yaml")

# Every params.yaml section and the config that reads it: the one list. A misspelt section is an
# error (else `trian:` would be silently ignored and the defaults would train).
SECTIONS = {
    "ingest": "defectops.components.ingest.step:IngestConfig",
    "data": "defectops.data_versions:DataSettings",
    "validate": "defectops.components.validate.step:ValidateConfig",
    "augment": "defectops.components.augment.step:AugmentConfig",
    "train": "defectops.components.train.step:TrainConfig",
    "tune": "defectops.components.tune.step:TuneConfig",
    "evaluate": "defectops.components.evaluate.step:EvaluateConfig",
    "register": "defectops.components.register.step:RegisterConfig",
    "registry": "defectops.registries:RegistryConfig",
    "deploy": "defectops.components.deploy.step:DeployConfig",
    "monitor": "defectops.components.monitor.step:MonitorConfig",
    "serve": "defectops.components.deploy.serve_config:ServeConfig",
    "feedback": "defectops.feedback.config:FeedbackConfig",
    "kfp": "defectops.pipelines.engines.kfp:KfpSettings",
    "sagemaker": "defectops.pipelines.engines.sagemaker:SageMakerSettings",
}


class ConfigError(DefectopsError, ValueError):
    """A config value is missing or wrong; the message names the file and the field."""


class StepConfig(BaseModel):
    """Base for step configs: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=StepConfig)


def read_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml; an absent file means 'all defaults'."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of step sections, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(SECTIONS)}")
    return data


def config_class(section: str) -> type[StepConfig]:
    """The config model of a params.yaml section (imported on demand: the engines' need optional extras)."""
    import importlib

    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)


def validate_params(path: Path = DEFAULT_PARAMS, sections: tuple[str, ...] | None = None) -> dict[str, StepConfig]:
    """Every section (or those named) validated at once, so a typo fails in a second, not an hour into a run.
    An engine section whose extra is not installed here is checked where that engine runs."""
    configs = {}
    for section in sections or tuple(SECTIONS):
        try:
            model = config_class(section)
        except ModuleNotFoundError:
            continue
        configs[section] = load_step_config(model, section, path)
    return configs


def load_step_config(model: type[C], section: str, path: Path = DEFAULT_PARAMS,
                     overrides: dict[str, Any] | None = None) -> C:
    """Build `model` from the `section` of params.yaml (plus overrides), with readable errors."""
    params = read_params(path)
    raw = params.get(section) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: section '{section}' must be a mapping, got {type(raw).__name__}")
    raw = {**raw, **(overrides or {})}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(section)"
            got = err.get("input")
            problems.append(f"  {section}.{field}: {err['msg']} (got {got!r})")
        raise ConfigError(f"{path}: invalid settings in '{section}':\n" + "\n".join(problems)) from None

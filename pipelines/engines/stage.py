"""Run one DAG stage with engine-chosen paths: the single adapter every engine calls.

A stage is declared with project paths (`data/raw`); an engine hands it other places (a KFP
artifact path, `/opt/ml/processing/input/data_raw`). This swaps them in the stage's declared
arguments and calls the very same step command, so no step knows which engine runs it.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from defectops.errors import DefectopsError
from defectops.pipelines.dag import STAGES, Stage


class StageError(DefectopsError):
    """A stage was asked to run with paths or settings its declaration does not have."""


def parse_path_mappings(items: list[str]) -> dict[str, str]:
    """`declared=actual` pairs from the command line."""
    mappings = {}
    for item in items:
        declared, sep, actual = item.partition("=")
        if not sep or not declared or not actual:
            raise StageError(f"--path '{item}': expected DECLARED=ACTUAL, e.g. data/raw=/mnt/in/data_raw")
        mappings[declared] = actual
    return mappings


def parse_settings(items: list[str]) -> dict[str, str]:
    """`section.key=value` pairs from the command line."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or not section or not field:
            raise StageError(f"--set '{item}': expected SECTION.KEY=VALUE, e.g. register.model_uri=s3://bucket/model")
        settings[key] = value
    return settings


def _with_settings(stage: Stage, params: Path, settings: Mapping[str, str], scratch: Path) -> Path:
    """The params file with engine-known values set (e.g. the S3 location of an earlier job's model)."""
    sections = {key.partition(".")[0] for key in settings}
    foreign = sorted(sections - set(stage.params))
    if foreign:
        raise StageError(f"stage '{stage.name}' reads params sections {list(stage.params)}; not {foreign}")
    raw = yaml.safe_load(Path(params).read_text()) or {}
    for key, value in settings.items():
        section, _, field = key.partition(".")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise StageError(f"{params}: section '{section}' is not a mapping; cannot set {key}")
        raw[section][field] = value
    out = scratch / "params.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _unpack_model_archive(folder: Path) -> None:
    """SageMaker hands a training job's output to the next job as model.tar.gz: open it in place."""
    archive = folder / "model.tar.gz"
    if folder.is_dir() and archive.is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        archive.unlink()


def _dotted(data: dict, key: str):
    for part in key.split("."):
        data = data[part]
    return data


def emitted_values(stage: Stage, paths: Mapping[str, str]) -> dict[str, object]:
    """The values a stage declares for engines to branch on, read from its reports."""
    values = {}
    for name, report, key in stage.emits:
        out = next(o for o in stage.outs if report.startswith(o + "/"))
        location = Path(paths.get(out, out)) / report[len(out) + 1:]
        try:
            values[name] = _dotted(json.loads(location.read_text()), key)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise StageError(f"stage '{stage.name}' declares '{name}' as {report}:{key}, but {location} "
                             f"has no such value ({exc})") from None
    return values


def invoke_step(name: str, args: list[str]) -> int:
    """Call `defectops NAME ARGS` in this process through the step's own command (not the whole CLI, which
    would pull every engine and sub-app into a container that runs one step); returns its exit code."""
    import importlib

    import typer

    app = typer.Typer(add_completion=False)
    app.command(name)(importlib.import_module(f"defectops.components.{name}.cli").command)
    try:
        result = typer.main.get_command(app).main(args, prog_name=f"defectops {name}", standalone_mode=False)
    except SystemExit as exc:  # pragma: no cover - click normally returns codes here
        return int(exc.code or 0)
    return result if isinstance(result, int) else 0


def run_stage(name: str, params: Path, paths: Mapping[str, str] | None = None,
              overrides: Mapping[str, object] | None = None,
              settings: Mapping[str, str] | None = None) -> dict[str, object]:
    """Run stage `name` of the DAG with `paths` replacing its declared paths.

    `overrides` are train settings chosen by a tuner (only a tunable stage takes them); `settings`
    (`section.key` -> value) are what only the engine knows at run time, set in the stage's own params
    sections before the step validates them. Returns the stage's emitted values (e.g. the evaluation gate).
    """
    if name not in STAGES:
        raise StageError(f"no stage '{name}' in the DAG; stages: {', '.join(STAGES)}")
    stage, paths = STAGES[name], dict(paths or {})
    unknown = sorted(set(paths) - set(stage.deps) - set(stage.outs))
    if unknown:
        raise StageError(f"stage '{name}' reads {list(stage.deps)} and writes {list(stage.outs)}; "
                         f"not {unknown}")
    for dep in stage.deps:
        _unpack_model_archive(Path(paths.get(dep, dep)))
    with tempfile.TemporaryDirectory() as scratch:
        if settings:
            params = _with_settings(stage, params, settings, Path(scratch))
        args = [*(str(paths.get(a, a)) for a in stage.args), "--params", str(params)]
        if overrides:
            if not stage.tunable:
                raise StageError(f"stage '{name}' takes no tuned settings (only tunable stages do)")
            best = Path(scratch) / "best_params.yaml"
            best.write_text(yaml.safe_dump({name: dict(overrides)}))
            args += ["--best-params", str(best)]
        code = invoke_step(name, args)
    if code:
        raise SystemExit(code)
    return emitted_values(stage, paths)


@contextmanager
def params_file(params_yaml: str) -> Iterator[Path]:
    """Settings passed as YAML text (how KFP pipeline parameters arrive) as the file steps read."""
    with tempfile.TemporaryDirectory() as scratch:
        params = Path(scratch) / "params.yaml"
        params.write_text(params_yaml)
        yield params


def run_stage_text(name: str, params_yaml: str, paths: Mapping[str, str] | None = None,
                   overrides: Mapping[str, object] | None = None,
                   settings: Mapping[str, str] | None = None) -> dict[str, object]:
    """As run_stage, with the settings passed as YAML text."""
    with params_file(params_yaml) as params:
        return run_stage(name, params, paths, overrides, settings)


def sagemaker_training(root: Path = Path("/opt/ml")) -> dict:
    """A SageMaker training job's entry (the image is started as `... train`).

    SageMaker's contract: settings in input/config/hyperparameters.json (all strings), channels
    under input/data/<channel>, the model to save in model/, checkpoints in checkpoints/ (synced
    to S3, restored after a spot interruption), a failure reason in output/failure.
    Hyperparameter `mode` is `final` (train the model) or `trial` (one tuning job: train, score,
    print the objective for the tuner's metric regex).
    """
    from defectops.components.tune.step import trial_from_params

    root = Path(root)
    try:
        hyper = json.loads((root / "input/config/hyperparameters.json").read_text())
        mode = hyper.pop("mode", "final")
        settings = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in hyper.items()}
        params = root / "input/data/params/params.yaml"
        dataset = root / "input/data/data_augmented"
        if mode == "trial":
            result = trial_from_params(params, dataset, root / "model", settings)
            (root / "model" / "trial.json").write_text(json.dumps(result, indent=2))
            print(f"defectops_objective={result['objective']:.6f}", flush=True)
            return result
        if mode != "final":
            raise StageError(f"hyperparameter 'mode' is '{mode}'; expected 'final' or 'trial'")
        settings["checkpoint_dir"] = str(root / "checkpoints")
        run_stage("train", params, {"data/augmented": str(dataset), "models/train": str(root / "model")}, settings)
        return {"mode": "final", "model": str(root / "model")}
    except BaseException as exc:
        (root / "output").mkdir(parents=True, exist_ok=True)
        (root / "output" / "failure").write_text(f"{type(exc).__name__}: {exc}"[:1024])
        raise


def main_env_root() -> Path:
    """Where the SageMaker layout lives: /opt/ml in a job, anywhere in a test."""
    return Path(os.environ.get("DEFECTOPS_SAGEMAKER_ROOT", "/opt/ml"))

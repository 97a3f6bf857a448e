from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    dataset: Path = typer.Option(Path("data/raw"), help="Canonical dataset to check (never changed)."),
    report: Path = typer.Option(Path("reports/validate"), help="Folder for report.json / .html / .txt."),
    out: Path = typer.Option(None, help="Where the clean dataset goes when the gate passes (e.g. data/validated)."),
    quarantine: Path = typer.Option(None, help="Where bad files are copied with reasons (default: REPORT/quarantine)."),
    profile: bool = typer.Option(False, "--profile", help="Learn the gate's limits from DATASET (one you accepted, "
                                 "e.g. data/validated) and store them in validate.profile, instead of checking it."),
    profile_path: Path = typer.Option(None, help="With --profile: where the profile goes (default: validate.profile)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Check the dataset against the data contract (Great Expectations); exit 3 when it is rejected.

    With --profile, learn the limits (sizes, brightness, contrast, blank level, boxes) from an accepted
    dataset instead: new data is then judged against what this plant's images look like.
    """
    from defectops.components.validate.step import ValidateConfig, learn_profile, validate

    if profile:
        run_step("validate", ValidateConfig, learn_profile, dataset, profile_path, params=params)
    else:
        run_step("validate", ValidateConfig, validate, dataset, report, out, quarantine, params=params)

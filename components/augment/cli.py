from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    dataset: Path = typer.Option(Path("data/validated"), help="Validated canonical dataset (validate --out)."),
    out: Path = typer.Option(Path("data/augmented"), help="Where the augmented dataset is written (replaced)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Balance rare defect classes in the training split with box-consistent variants."""
    from defectops.components.augment.step import AugmentConfig, augment

    run_step("augment", AugmentConfig, augment, dataset, out, params=params)

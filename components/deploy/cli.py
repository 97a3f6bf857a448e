from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step


def command(
    dataset: Path = typer.Option(Path("data/raw"), help="Dataset whose held-out splits form the drift reference."),
    out: Path = typer.Option(Path("deploy"), help="Folder for model.onnx, model.json and reference.csv."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Export the approved champion to ONNX and build the drift reference."""
    from defectops.components.deploy.step import DeployConfig, deploy

    run_step("deploy", DeployConfig, deploy, dataset, out, params=params)


def serve(
    model_dir: Path = typer.Option(Path("deploy"), help="Folder written by 'defectops deploy'."),
    host: str = typer.Option("127.0.0.1", help="Bind address; loopback unless you mean to expose it."),
    port: int = typer.Option(8000),
    log: Path = typer.Option(Path("monitoring/inference_log.jsonl"), help="Append-only decision log."),
) -> None:
    """Serve the deployed model over HTTP: POST /v1/predict with the raw image bytes."""
    import uvicorn

    from defectops.components.deploy.server import create_app

    uvicorn.run(create_app(model_dir, log), host=host, port=port, log_level="warning")

from __future__ import annotations

from pathlib import Path

import typer

from defectops.cli_support import PARAMS_OPTION, run_step
from defectops.config import load_step_config
from defectops.registries import open_registry_from


def command(
    dataset: Path = typer.Option(Path("data/validated"),
                                 help="Dataset whose held-out splits form the drift reference."),
    out: Path = typer.Option(Path("deploy"), help="Root folder; the version lands in <out>/versions/v<N>/."),
    alias: str = typer.Option(None, help="Override params: champion, or challenger (once cleared for canary)."),
    precision: str = typer.Option(None, help="Override params: fp32 | fp16 | int8 (re-validated before serving)."),
    runtime: str = typer.Option(None, help="Override params: onnxruntime | openvino."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Export the approved champion (or canary-cleared challenger) to ONNX and build the drift reference.

    Any variant other than FP32 on ONNX Runtime is scored on val and test, gets its own recall-first threshold
    and is refused (exit 4) when its test recall misses the target or its precision drops too far."""
    from defectops.components.deploy.step import DeployConfig, deploy

    def from_the_configured_registry(config: DeployConfig, *paths: Path) -> dict:
        return deploy(config, *paths, registry=open_registry_from(params, config.model_name))

    overrides = {k: v for k, v in {"alias": alias, "precision": precision, "runtime": runtime}.items() if v}
    run_step("deploy", DeployConfig, from_the_configured_registry, dataset, out, params=params, overrides=overrides)


def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address; loopback unless you mean to expose it."),
    port: int = typer.Option(8000),
    deploy_root: Path = typer.Option(None, help="Override params: folder written by 'defectops deploy'."),
    records: str = typer.Option(None, help="Override params: decision store (SQLite file or SQLAlchemy URL)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Serve the registry's champion: POST /v1/predict, /v1/explain; GET /healthz, /readyz, /metrics."""
    import uvicorn

    from defectops.cli_support import step_errors
    from defectops.components.deploy.serve_config import ServeConfig
    from defectops.components.deploy.server import create_app

    overrides = {k: v for k, v in {"deploy_root": deploy_root, "records_url": records}.items() if v is not None}
    with step_errors("serve"):
        config = load_step_config(ServeConfig, "serve", params, overrides)
        app = create_app(config, open_registry_from(params, config.model_name))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)

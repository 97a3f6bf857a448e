"""Drift -> alert -> one retraining: debounce by in-flight run and cool-down, on real processes and moto."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from defectops.components.monitor.retrain import RetrainConfig, in_flight, on_drift, warm_start_overrides

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

TRIGGER = {"reason": "data drift", "drifted_features": ["brightness"], "action": "retrain"}


@pytest.fixture
def webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _trigger_file(tmp_path):
    path = tmp_path / "retrain_trigger.json"
    path.write_text(json.dumps(TRIGGER))
    return path


def test_in_flight_run_blocks_a_second_start(tmp_path, webhook):
    url, received = webhook
    running = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "retrain_state.json").write_text(json.dumps(
            {"last_run": {"engine": "local", "pid": running.pid, "started": "2020-01-01T00:00:00+00:00"}}))
        config = RetrainConfig(enabled=True, webhook_url=url, cooldown_minutes=0)
        outcome = on_drift(TRIGGER, _trigger_file(tmp_path), config, tmp_path)
        assert outcome["action"] == "skipped: a retraining run is still in flight"
        assert outcome["alert"] == "webhook 204" and received[0]["event"] == "drift"
    finally:
        running.kill()
        running.wait()
    state = json.loads((tmp_path / "retrain_state.json").read_text())
    assert state["alerts"] == 1 and "runs_started" not in state


@pytest.mark.e2e
def test_sagemaker_engine_starts_once_through_submit_then_cools_down(tmp_path, monkeypatch):
    """The retraining is submitted like any run: settings uploaded, pipeline upserted, execution started."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["registry"] = {"backend": "sagemaker"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with moto.mock_aws():
        sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
        s3.create_bucket(Bucket="defectops-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        config = RetrainConfig(enabled=True, engine="sagemaker", project_dir=project, cooldown_minutes=60)
        clients = {"sagemaker_client": sm, "s3_client": s3}
        outcomes = [on_drift(TRIGGER, _trigger_file(tmp_path), config, tmp_path, clients) for _ in range(5)]
        assert [o["action"].split(":")[0] for o in outcomes] == ["retraining started"] + ["skipped"] * 4
        assert all("cool-down" in o["action"] for o in outcomes[1:])
        executions = sm.list_pipeline_executions(PipelineName="defectops-training")["PipelineExecutionSummaries"]
        assert len(executions) == 1
        assert outcomes[0]["run"]["run_id"] == executions[0]["PipelineExecutionArn"]
        started = sm.describe_pipeline_execution(PipelineExecutionArn=executions[0]["PipelineExecutionArn"])
        parameters = {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=started["PipelineExecutionArn"])["PipelineParameters"]}
        assert parameters["Trigger"] == "drift"
        sent = yaml.safe_load(s3.get_object(Bucket="defectops-artifacts", Key=parameters["ParamsS3Uri"].split(
            "defectops-artifacts/", 1)[1])["Body"].read())
        assert sent["train"]["weights"] == "champion"  # its jobs find the champion in the SageMaker registry
        assert sent["train"]["epochs"] == warm_start_overrides(config)["train"]["epochs"] < params["train"]["epochs"]


@pytest.mark.e2e
def test_kfp_engine_runs_the_pipeline_command_with_a_warm_start(tmp_path):
    """Started as `defectops pipeline run --engine kfp` in the background, told to start from the champion
    with a third of the epochs; here the project's settings are invalid, so the run stops at validation."""
    import time

    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"]["epochs"] = 21
    params["evaluate"]["target_recall"] = 2  # refused before anything runs
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    config = RetrainConfig(enabled=True, engine="kfp", project_dir=project, cooldown_minutes=60)
    assert warm_start_overrides(config) == {"train": {"weights": "champion", "epochs": 7}}
    outcome = on_drift(TRIGGER, _trigger_file(tmp_path), config, tmp_path)
    assert outcome["action"] == "retraining started" and outcome["run"]["engine"] == "kfp"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and in_flight({"last_run": outcome["run"]}):
        time.sleep(0.5)
    log = open(outcome["run"]["log"]).read()
    assert "pipeline run --engine kfp" in log and "evaluate.target_recall" in log


def test_disabled_retraining_only_alerts(tmp_path, webhook):
    url, received = webhook
    outcome = on_drift(TRIGGER, _trigger_file(tmp_path), RetrainConfig(enabled=False, webhook_url=url), tmp_path)
    assert outcome["action"].startswith("alert only") and len(received) == 1


def test_every_parses_intervals():
    import typer

    from defectops.components.monitor.cli import parse_every

    assert parse_every("15m") == 900 and parse_every("30s") == 30 and parse_every("1h") == 3600
    with pytest.raises(typer.BadParameter, match="e.g. 30s"):
        parse_every("15 minutes")

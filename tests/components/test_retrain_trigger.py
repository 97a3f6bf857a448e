"""Drift -> alert -> one retraining: debounce by in-flight run and cool-down, on real processes and moto."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from defectops.components.monitor.retrain import RetrainConfig, on_drift

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


def test_sagemaker_engine_starts_once_then_cools_down(tmp_path, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        client = boto3.client("sagemaker")
        client.create_pipeline(PipelineName="defectops-training", RoleArn="arn:aws:iam::123456789012:role/sm",
                               PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        config = RetrainConfig(enabled=True, engine="sagemaker", sagemaker_pipeline="defectops-training",
                               cooldown_minutes=60)
        outcomes = [on_drift(TRIGGER, _trigger_file(tmp_path), config, tmp_path, client) for _ in range(5)]
        assert [o["action"].split(":")[0] for o in outcomes] == ["retraining started"] + ["skipped"] * 4
        assert all("cool-down" in o["action"] for o in outcomes[1:])
        executions = client.list_pipeline_executions(PipelineName="defectops-training")["PipelineExecutionSummaries"]
        assert len(executions) == 1
        assert outcomes[0]["run"]["execution_arn"] == executions[0]["PipelineExecutionArn"]


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

"""The endpoint's records under a line's conditions: killed mid-load, and the MES broker going away."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import httpx
import pytest

from defectops.components.deploy.verify import version_dir
from defectops.components.monitor.step import MonitorConfig, monitor
from defectops.dataset import read_manifest
from defectops.records.store import DecisionStore

from ..services import Mosquitto
from .conftest import API_KEY, MODEL, Server, serve_params


def _writer_pids() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "multiprocessing.spawn"], capture_output=True, text=True)
    return set(found.stdout.split())


def _parent(pid: str) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _bodies(dataset, n=8):
    return [(dataset / r["path"]).read_bytes() for r in read_manifest(dataset)[:n]]


def test_kill_9_under_load_leaves_a_store_that_opens_and_a_drift_check_that_runs(deployed, tiny_dataset, tmp_path):
    writers_before = _writer_pids()
    server = Server(serve_params(tmp_path, MODEL, deployed)).wait_ready()
    bodies, sent, stop, lock = _bodies(tiny_dataset), [0], threading.Event(), threading.Lock()

    def load() -> None:
        with httpx.Client(headers={"x-api-key": API_KEY}, timeout=10) as http:
            while not stop.is_set():
                with lock:  # counted when sent: the kill can land after the server decided, before the reply
                    n = sent[0]
                    sent[0] += 1
                try:
                    http.post(f"{server.url}/v1/predict", content=bodies[n % len(bodies)],
                              headers={"x-part-id": f"P-{n}"})
                except httpx.HTTPError:
                    return
    clients = [threading.Thread(target=load) for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(4)
    server.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: the power-cut case
    server.proc.wait()
    stop.set()
    for c in clients:
        c.join()
    time.sleep(1.5)  # the writer process stores what it had received, sees its endpoint gone and ends
    orphans = [pid for pid in _writer_pids() if _parent(pid) == 1 and pid not in writers_before]
    assert orphans == [], f"writer processes outlived their endpoint: {orphans}"
    store = DecisionStore(tmp_path / "decisions.db")
    kept = store.count()
    assert 0 < kept <= sent[0]  # what was in the endpoint's buffers may be lost, nothing is torn
    assert len({r["part_id"] for r in store.query(limit=None)}) == kept  # no record written twice
    reference = version_dir(deployed, store.window(1)["model_version"].iloc[0]) / "reference.csv"
    verdict = monitor(MonitorConfig(min_window=5, features=["brightness", "contrast", "max_confidence"]),
                      reference, str(tmp_path / "decisions.db"), tmp_path / "monitor")
    assert verdict["status"] in ("ok", "drift") and verdict["current_rows"] == min(kept, 500)
    restarted = Server(serve_params(tmp_path, MODEL, deployed)).wait_ready()  # and the endpoint starts again
    try:
        assert httpx.post(f"{restarted.url}/v1/predict", content=bodies[0],
                          headers={"x-api-key": API_KEY, "x-part-id": "AFTER"}).status_code == 200
        deadline = time.monotonic() + 10
        while not store.query(part="AFTER") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.query(part="AFTER")[0]["model_version"]
    finally:
        restarted.stop()


class Subscriber:
    """The MES side: a persistent QoS 1 session that survives broker restarts, deduplicating by message id."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mes-test", clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe("defectops/#", qos=1)
        self.client.on_message = lambda _c, _u, msg: self.messages.append(json.loads(msg.payload))
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def unique(self) -> dict[str, dict]:
        return {m["message_id"]: m for m in self.messages}


def test_a_broker_outage_loses_nothing_and_delivery_resumes_in_order(deployed, tiny_dataset, tmp_path):
    broker = Mosquitto(tmp_path).start()
    subscriber = Subscriber(broker.port)
    params = serve_params(tmp_path, MODEL, deployed, publish={"mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                                                              "retry_s": 0.3})
    server = Server(params).wait_ready()
    bodies = _bodies(tiny_dataset, 4)

    def send(first: int, n: int) -> None:
        with httpx.Client(headers={"x-api-key": API_KEY}) as http:
            for i in range(first, first + n):
                reply = http.post(f"{server.url}/v1/predict", content=bodies[i % 4],
                                  headers={"x-part-id": f"P-{i:03d}", "x-line": "line 3"})
                assert reply.status_code == 200  # the line never waits for the MES

    def received(n: int, timeout: float = 40) -> dict:
        deadline = time.monotonic() + timeout
        while len(subscriber.unique()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return subscriber.unique()

    try:
        send(0, 20)
        assert len(received(20)) == 20
        broker.stop()
        send(20, 20)  # published into the outage: kept in the outbox
        time.sleep(1)
        outbox = DecisionStore(tmp_path / "decisions.db").pending_count()
        assert outbox >= 1
        assert "unreachable" in (httpx.get(f"{server.url}/readyz").json()["publish"]["last_error"] or "")
        broker.start()
        send(40, 20)
        unique = received(60)
    finally:
        server.stop()
        subscriber.client.loop_stop()
        broker.stop()
    assert sorted(m["part_id"] for m in unique.values()) == [f"P-{i:03d}" for i in range(60)]  # nothing lost
    first_seen = list(dict.fromkeys(m["message_id"] for m in subscriber.messages))
    record_ids = [unique[k]["record_id"] for k in first_seen]
    assert record_ids == sorted(record_ids)  # delivered in decision order, across the outage
    message = unique[first_seen[0]]
    stored = DecisionStore(tmp_path / "decisions.db").query(part=message["part_id"])
    assert message["line"] == "line 3" and message["decision"] == stored[0]["decision"]  # what the line was told
    assert {"defects", "model_version", "time", "station"} <= set(message)
    assert DecisionStore(tmp_path / "decisions.db").pending_count() == 0
    # At least once: a repeat (around the outage) is the same message, so dropping it by message_id is exact.
    assert all(m == unique[m["message_id"]] for m in subscriber.messages)


def test_the_publish_settings_are_validated(tmp_path):
    from defectops.components.deploy.serve_config import ServeConfig

    with pytest.raises(ValueError, match="decisions"):
        ServeConfig(publish={"mqtt_host": "h", "decisions": ["scrap"]})


def test_inspectors_disagreement_is_on_the_endpoints_metrics(deployed, tiny_dataset, tmp_path):
    """An answer in the store shows on /metrics per version and class: a drift signal Prometheus can alert on."""
    from defectops.feedback.answers import answer

    server = Server(serve_params(tmp_path, MODEL, deployed, archive_accept_share=1.0)).wait_ready()
    try:
        body = _bodies(tiny_dataset, 1)[0]
        decided = httpx.post(f"{server.url}/v1/predict", content=body,
                             headers={"x-api-key": API_KEY, "x-part-id": "ASKED"}).json()
        store = DecisionStore(tmp_path / "decisions.db")
        deadline = time.monotonic() + 10
        while not store.query(part="ASKED") and time.monotonic() < deadline:
            time.sleep(0.1)
        record = store.query(part="ASKED")[0]
        # The inspector says the opposite of the model: one answer, one disagreement.
        verdict = "good" if decided["decision"] == "reject" else "defect"
        answer(store, record["id"], "ines", verdict, [{"class_name": "scratch", "box": [1, 1, 9, 9]}])
        text = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    version = decided["model_version"]
    lines = [line for line in text.splitlines() if line.startswith("defectops_inspector_")]
    assert any(line.startswith("defectops_inspector_answers{") and f'model_version="{version}"' in line
               and line.endswith(" 1.0") for line in lines), lines
    assert any(line.startswith("defectops_inspector_disagreement_ratio{") and f'model_version="{version}"' in line
               and line.endswith(" 1.0") for line in lines), lines

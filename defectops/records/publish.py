"""The MES hand-off: decisions to MQTT and/or a webhook, through a durable outbox.

Every message is written to the outbox table in the same transaction as its decision, and one thread
delivers the outbox in order. A broker or MES outage only makes the outbox longer; when it returns,
delivery resumes where it stopped. Delivery is at least once; each message carries a `message_id`
(part id + record id) for the receiver to drop a repeat, so each decision counts exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Literal

from pydantic import BaseModel, Field

from defectops.records.store import DecisionStore

log = logging.getLogger("defectops.publish")
DECISIONS = ("accept", "review", "reject")


class PublishConfig(BaseModel):
    model_config = {"extra": "forbid"}

    mqtt_host: str | None = Field(None, description="MQTT broker host; none: no MQTT.")
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_topic: str = Field("defectops/{line}/decisions", description="{line} becomes the part's line "
                                                                     "('default' when it has none).")
    mqtt_username_env: str | None = Field(None, description="Env var holding the broker user name.")
    mqtt_password_env: str | None = Field(None, description="Env var holding the broker password.")
    mqtt_client_id: str = "defectops-endpoint"
    webhook_url: str | None = Field(None, description="POSTed one JSON message per decision; none: no webhook.")
    decisions: list[Literal["accept", "review", "reject"]] = Field(list(DECISIONS),
                                                                   description="Which decisions the MES gets.")
    retry_s: float = Field(2.0, gt=0, description="Wait after a failed delivery before trying again.")

    @property
    def enabled(self) -> bool:
        return bool(self.mqtt_host or self.webhook_url)


def message_for(row: dict, config: PublishConfig) -> dict | None:
    """The outbox message for one decision row (its record id is filled in when stored), or None."""
    if not config.enabled or row["decision"] not in config.decisions:
        return None
    line = row.get("line") or "default"
    topic = config.mqtt_topic.format(line=re.sub(r"[^A-Za-z0-9_.-]", "_", line))
    key = f"{row.get('part_id') or row['image_sha256']}:{{id}}"
    payload = {"message_id": key, "part_id": row.get("part_id"), "line": row.get("line"),
               "station": row.get("station"), "decision": row["decision"],
               "defects": [{"class": b["class_name"], "score": b["score"], "box": b["box"]} for b in row["boxes"]],
               "model_name": row["model_name"], "model_version": row["model_version"], "time": row["time"]}
    return {"topic": topic, "dedupe_key": key, "payload": payload}


class Publisher:
    def __init__(self, store: DecisionStore, config: PublishConfig):
        self.store, self.config = store, config
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mes-publisher", daemon=True)
        self._mqtt = self._connect_mqtt() if config.mqtt_host else None
        self.delivered = 0
        self.last_error: str | None = None

    def _connect_mqtt(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.config.mqtt_client_id,
                             clean_session=False)
        user = os.environ.get(self.config.mqtt_username_env or "", "")
        if user:
            client.username_pw_set(user, os.environ.get(self.config.mqtt_password_env or "", ""))
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30)
        client.loop_start()  # reconnects by itself after an outage
        return client

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def nudge(self) -> None:
        self._wake.set()

    def _deliver(self, row: dict) -> None:
        payload = json.loads(row["payload"])
        body = json.dumps(payload, separators=(",", ":"))
        if self._mqtt is not None:
            if not self._mqtt.is_connected():
                raise ConnectionError(f"MQTT broker {self.config.mqtt_host}:{self.config.mqtt_port} unreachable")
            info = self._mqtt.publish(row["topic"], body, qos=1)
            info.wait_for_publish(timeout=5)
            if not info.is_published():
                raise ConnectionError(f"MQTT broker did not acknowledge message {payload['message_id']}")
        if self.config.webhook_url:
            import httpx

            reply = httpx.post(self.config.webhook_url, content=body, timeout=5,
                               headers={"content-type": "application/json", "idempotency-key": payload["message_id"]})
            if reply.status_code >= 300:
                raise ConnectionError(f"webhook answered {reply.status_code}: {reply.text[:200]}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.store.pending(200)
            except Exception as exc:  # noqa: BLE001 - the store is briefly unavailable
                self.last_error = f"outbox read failed: {exc}"
                batch = []
            for row in batch:
                try:
                    self._deliver(row)
                except Exception as exc:  # noqa: BLE001 - an outage: keep the order, try again later
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.store.mark_failed(row["id"], self.last_error)
                    self._stop.wait(self.config.retry_s)
                    break
                self.store.mark_sent(row["id"])
                self.delivered += 1
                self.last_error = None
            else:
                self._wake.wait(0.5)
                self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()

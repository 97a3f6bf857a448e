"""The review page shows what each version does on the line, counted in the endpoint's decision store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from defectops.records.store import DecisionStore
from defectops.ui import auth
from defectops.ui.app import create_app


def _row(version: str, decision: str, hours_ago: float = 1) -> dict:
    return {"time": datetime.now(UTC) - timedelta(hours=hours_ago), "model_name": "m", "model_version": version,
            "role": "champion", "precision": "fp32", "decision": decision, "score": 0.5, "threshold": 0.5,
            "image_sha256": "0" * 64, "latency_ms": 5.0}


def test_the_pending_page_shows_reject_and_review_rates_per_version(tmp_path):
    store = DecisionStore(tmp_path / "decisions.db")
    store.record_many([_row("3", "reject")] + [_row("3", "accept")] * 8 + [_row("3", "review")]
                      + [_row("2", "reject", hours_ago=30)])  # older than a day: not shown
    auth.add_user(tmp_path / "users.json", "qa.lead", "quality-first-2026")
    app = create_app("records-page-test", tmp_path / "users.json", records=str(tmp_path / "decisions.db"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"username": "qa.lead", "password": "quality-first-2026", "csrf": token})
        page = client.get("/").text
    table = page[page.index('id="on-the-line"'):page.index("</table>", page.index('id="on-the-line"'))]
    cells = re.findall(r"<td>([^<]*)</td>", table)
    assert cells == ["v3", "10", "10.0 %", "10.0 %"]

"""The inspection queue's pages through the app itself (no browser): roles, CSRF, escaping, confinement."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from defectops.feedback import answers
from defectops.records.archive import ImageArchive
from defectops.records.store import DecisionStore
from defectops.ui import auth

from .test_answers import decide

PASSWORDS = {"ines": "inspects-parts-2026", "qa.lead": "quality-first-2026"}
HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def site(tmp_path):
    from defectops.ui.app import create_app

    store = DecisionStore(tmp_path / "decisions.db")
    archive = ImageArchive(tmp_path / "archive")
    rows = [decide(0, "review", 0.3, archive, part_id="P-0"), decide(1, "review", 0.4, archive, part_id="P-1"),
            decide(2, "review", 0.45, None, part_id="P-2", image_uri=str(tmp_path / "decisions.db"))]
    rows[1]["boxes"][0]["class_name"] = HOSTILE  # a class name is data: it must never become markup
    rows[0]["boxes"][0].update(area_px=420.0, area_mm2=0.042, severity="review")  # as serve.severity records it
    ids = store.record_many(rows)
    users = tmp_path / "users.json"
    auth.add_user(users, "ines", PASSWORDS["ines"], ("inspector",))
    auth.add_user(users, "qa.lead", PASSWORDS["qa.lead"])
    app = create_app("inspect-test", users, records=str(tmp_path / "decisions.db"), archive_root=tmp_path / "archive",
                     deploy_root=tmp_path / "deploy")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, store, ids


def _login(client, name):
    token = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
    return client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": token},
                       follow_redirects=False)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_an_inspector_lands_on_the_newest_uncertain_part_and_answers_it(site):
    client, store, ids = site
    assert _login(client, "ines").headers["location"] == "/inspect"
    first = client.get("/inspect", follow_redirects=False)
    assert first.headers["location"] == f"/inspect/{ids[2]}"  # newest review first
    page = client.get(f"/inspect/{ids[1]}")
    assert page.status_code == 200 and "P-1" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/label.js">']  # nothing inline
    assert HOSTILE not in page.text and "&lt;img src=x" in page.text  # in the box list, escaped
    assert client.get("/static/label.js").headers["content-type"].startswith("text/javascript")
    assert client.get(f"/inspect/{ids[1]}/image").content[:4] == b"\x89PNG"
    # A record pointing outside the archive is not a way to read files.
    assert client.get(f"/inspect/{ids[2]}/image").status_code == 404
    assert "is not exported" in client.get(f"/inspect/{ids[1]}/heatmap.png").text

    csrf = _csrf(page.text)
    assert client.post(f"/inspect/{ids[1]}/answer", data={"verdict": "defect", "boxes": "[]"}).status_code == 403
    bad = client.post(f"/inspect/{ids[1]}/answer", data={"verdict": "defect", "boxes": "[{", "csrf": csrf})
    assert bad.status_code == 422 and "answer not stored" in bad.text
    done = client.post(f"/inspect/{ids[1]}/answer", follow_redirects=False, data={
        "verdict": "defect", "csrf": csrf, "boxes": '[{"class_name": "scratch", "box": [5, 6, 20, 30]}]'})
    assert done.status_code == 303
    stored = answers.answered(store)
    assert [(a["record_id"], a["inspector"], a["answer"], a["boxes"]) for a in stored] == [
        (ids[1], "ines", "defect", [{"class_name": "scratch", "box": [5.0, 6.0, 20.0, 30.0]}])]
    client.post(f"/inspect/{ids[2]}/answer", data={"verdict": "skip", "csrf": csrf})
    assert client.get("/inspect", follow_redirects=False).headers["location"] == f"/inspect/{ids[0]}"

    refused = client.post("/versions/1/decide", data={"action": "approve", "reason": "fine", "csrf": csrf})
    assert refused.status_code == 403 and "ines is inspector; to decide needs the role approver" in refused.text


def test_each_box_shows_its_area_and_severity(site):
    client, _, ids = site
    _login(client, "ines")
    listed = re.search(r'<ul class="muted" id="model-boxes">(.*?)</ul>', client.get(f"/inspect/{ids[0]}").text).group(1)
    assert "420 px²" in listed and "(0.042 mm²)" in listed and 'severity <b class="severity">review</b>' in listed
    other = re.search(r'id="model-boxes">(.*?)</ul>', client.get(f"/inspect/{ids[1]}").text).group(1)
    assert "px²" not in other and "severity" not in other  # decided before any rule: nothing invented


def test_approvers_see_the_disagreement_per_version_and_class(site):
    client, store, ids = site
    answers.answer(store, ids[0], "ines", "defect", [{"class_name": "scratch", "box": [1, 1, 9, 9]}])
    assert _login(client, "qa.lead").headers["location"] == "/"
    table = client.get("/").text.split('id="disagreement"')[1].split("</table>")[0]
    assert "<td>v3</td><td>scratch</td><td>1</td>" in table and "100.0 %" in table

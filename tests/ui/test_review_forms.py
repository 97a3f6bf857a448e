"""The review page's forms over plain HTTP (no browser needed): login first, and a CSRF token on every post."""

from __future__ import annotations

import httpx

from .conftest import PASSWORDS


def test_forms_need_login_and_csrf(site):
    url, _, v2, _ = site
    assert httpx.get(f"{url}/versions/{v2}", follow_redirects=False).headers["location"] == "/login"
    forged = httpx.post(f"{url}/login", data={"username": "qa.lead", "password": PASSWORDS["qa.lead"]})
    assert forged.status_code == 403 and "CSRF" in forged.text
    with httpx.Client(base_url=url) as http:  # logged in, but posting without the page's token
        page = http.get("/login").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": "qa.lead", "password": PASSWORDS["qa.lead"], "csrf": token})
        reply = http.post(f"/versions/{v2}/decide", data={"action": "reject", "reason": "x", "csrf": "nope"})
        assert reply.status_code == 403
    wrong = httpx.Client(base_url=url)
    token = wrong.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
    assert wrong.post("/login", data={"username": "qa.lead", "password": "nope", "csrf": token}).status_code == 401

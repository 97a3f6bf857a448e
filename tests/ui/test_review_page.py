"""The approver's page driven in headless Chromium (Debian's chromium through Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from defectops import audit, registry
from defectops.components.register.step import RegisterConfig, register
from defectops.ui import auth

from .review_site import review_page

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

MODEL = "ui-test-detector"
ARTIFACTS = Path(os.environ.get("DEFECTOPS_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
PASSWORDS = {"qa.lead": "quality-first-2026", "data.scientist": "trains-models-2026"}


def _register(trained, evaluated, tmp_path, who="data.scientist") -> str:
    os.environ["DEFECTOPS_USER"] = who
    try:
        return register(RegisterConfig(model_name=MODEL), trained, evaluated, tmp_path)["version"]
    finally:
        os.environ.pop("DEFECTOPS_USER", None)


@pytest.fixture(scope="module")
def site(trained, evaluated, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    v1 = _register(trained, evaluated, tmp)
    registry.approve(MODEL, v1, "qa.lead", "first line release")
    v2 = _register(trained, evaluated, tmp)
    users = tmp / "users.json"
    for name, password in PASSWORDS.items():
        auth.add_user(users, name, password)
    with review_page(users, MODEL) as url:
        yield url, v1, v2, tmp


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def _login(browser, url, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_selector("#user")
    assert page.inner_text("#user") == name
    return page


def _image_loaded(page, selector) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 100")


def test_approver_reviews_and_promotes(site, browser):
    url, v1, v2, _ = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = _login(browser, url, "qa.lead")
    assert f"v{v2}" in page.inner_text("#pending")
    page.screenshot(path=str(ARTIFACTS / "ui_pending_list.png"), full_page=True)

    page.click(f"#pending a[href='/versions/{v2}']")
    page.wait_for_selector("#pr-curve")
    page.wait_for_load_state("networkidle")
    assert _image_loaded(page, "#pr-curve") and _image_loaded(page, "#fn-grid")
    comparison = page.inner_text("#comparison")
    assert f"(v{v2})" in comparison and f"(v{v1})" in comparison and "lower bound" in comparison
    assert "scratch" in page.inner_text("#per-class")
    assert "Model card" in page.inner_text("#model-card")
    page.screenshot(path=str(ARTIFACTS / "ui_review_page.png"), full_page=True)

    page.fill("#reason", "recall holds on every class; FN grid reviewed")
    page.click("#approve")
    page.wait_for_selector("#message")
    assert "now the champion" in page.inner_text("#message")
    assert registry.by_alias(MODEL, registry.CHAMPION).version == v2
    assert registry.get_version(MODEL, v2).tags["approved_by"] == "qa.lead"
    assert audit.verify() >= 3
    last = audit.read()[-1]
    assert (last["action"], last["actor"], last["version"]) == ("approve", "qa.lead", v2)
    assert "approve" in page.inner_text("#audit")


def test_submitter_cannot_approve_own_run(site, browser, trained, evaluated):
    url, _, _, tmp = site
    v3 = _register(trained, evaluated, tmp)
    page = _login(browser, url, "data.scientist")
    page.goto(f"{url}/versions/{v3}")
    page.fill("#reason", "looks good to me")
    page.click("#approve")
    page.wait_for_selector("#error")
    assert "four-eyes rule: data.scientist submitted" in page.inner_text("#error")
    assert registry.get_version(MODEL, v3).tags["approval"] == "pending"


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

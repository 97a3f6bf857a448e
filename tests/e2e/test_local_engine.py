"""The main job end to end on the local DVC engine, on a tiny config, as a new user runs it."""

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from .project import make_project, project_env

TINY = {
    "ingest": {"n_images": 40, "image_size": 64, "seed": 5},
    "validate": {"min_images_per_class": 1},  # 40 images: a rare class may have only a few
    "train": {"epochs": 2, "imgsz": 64, "batch": 8, "workers": 0},
    "monitor": {"min_window": 5},  # the tiny test split has 6 images
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"), TINY)


def _run(root, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=project_env(root), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(project):
    result = _run(project, "defectops.cli", "demo", "--approver", "qa.lead")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def test_main_job_leaves_every_artefact(project, demo):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "validate", "augment", "train", "evaluate", "register"}
    # The dataset a model saw is the validated set (bad files set aside), as dvc.lock records it.
    dataset_md5 = next(o["md5"] for o in lock["stages"]["validate"]["outs"] if o["path"] == "data/validated")
    assert json.loads((project / "reports/validate/report.json").read_text())["passed"] is True
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert {"threshold", "val", "test", "test_map50"} <= set(evaluation)
    assert (project / "reports/evaluate/pr_curve.png").stat().st_size > 5_000
    assert (project / "mlflow.db").exists()
    assert (project / "deploy/versions/v1/model.onnx").stat().st_size > 1_000_000
    verdict = json.loads((project / "monitoring/verdict.json").read_text())
    assert verdict["status"] == "drift" and "brightness" in verdict["drifted_features"]
    assert (project / "monitoring/drift_report.html").exists()
    assert json.loads((project / "monitoring/retrain_trigger.json").read_text())["action"] == "retrain"
    from defectops.records.store import DecisionStore

    n_test = json.loads((project / "data/raw/ingest_metrics.json").read_text())["per_split"]["test"]
    assert DecisionStore(project / "monitoring/decisions.db").count() == 2 * n_test
    # The story is told: approval by a named person, drift found only after the lighting shift.
    out = demo.stdout + demo.stderr
    assert "defectops login qa.lead" in out and "defectops registry approve 1 --reason" in out
    assert out.index("drift check: ok") < out.index("drift check: drift")

    # Lineage: the registered version names the dataset exactly as dvc.lock does.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    check = subprocess.run([sys.executable, "-c",
                            "from defectops import registry; v = registry.get_version('defectops-detector', '1');"
                            "print(v.tags['dataset_md5'], v.tags['approval'], ','.join(v.aliases))"],
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert check.stdout.split() == [dataset_md5, "approved", "champion"], check.stderr
    # How the training set was made (augmentation config, counts, what came from what) is on the run.
    listing = ("import mlflow; from defectops import registry; v = registry.get_version('defectops-detector', '1'); "
               "print(*sorted(a.path for a in mlflow.MlflowClient().list_artifacts(v.run_id, 'data')))")
    artifacts = subprocess.run([sys.executable, "-c", listing],
                               cwd=project, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert artifacts.stdout.split() == ["data/augment_log.csv", "data/augment_metrics.json"], artifacts.stderr


def test_nothing_phones_home(project, demo):
    attempts = project / "network_attempts.jsonl"
    assert not attempts.exists(), attempts.read_text()


def test_second_repro_skips_every_stage(project, demo):
    started = time.perf_counter()
    result = _run(project, "dvc", "repro")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    for stage in ("ingest", "validate", "augment", "train", "evaluate", "register"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert "Running stage" not in result.stdout
    print(f"no-op dvc repro took {elapsed:.1f} s")


def test_corrupt_image_fails_validate_by_name(project, demo):
    bad = project / "data/raw/images/train/operator_upload.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    try:
        result = _run(project, "defectops.cli", "validate", "--dataset", "data/raw", "--report", "reports/check")
        assert result.returncode == 3
        assert "images/train/operator_upload.png" in result.stderr
    finally:
        bad.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_drift_starts_exactly_one_retraining_which_reports_it_learned_nothing_new(project, demo):
    """The closed loop: shifted traffic -> drift -> one retraining however often the monitor fires. Retraining on
    the champion's own data gives the champion again: reported ('same data as champion v1; add feedback'), not put
    in front of an approver as a challenger (the inspector-loop test below closes the loop with new data)."""
    n_test = json.loads((project / "data/raw/ingest_metrics.json").read_text())["per_split"]["test"]
    window = ["--window", str(n_test)]  # the newest window is the lighting-shifted traffic
    checks = [_run(project, "defectops.cli", "monitor", *window) for _ in range(4)]
    assert all(c.returncode == 0 for c in checks), checks[0].stderr[-2000:]
    actions = [json.loads(c.stdout)["retrain"]["action"] for c in checks]
    assert actions[0] == "retraining started"
    assert all(a.startswith("skipped") for a in actions[1:]), actions

    state = json.loads((project / "monitoring/retrain_state.json").read_text())
    assert state["runs_started"] == 1 and state["alerts"] == 1 + 4  # the demo's own drift alert, then ours
    deadline = time.monotonic() + 600
    while _alive(state["last_run"]["pid"]) and time.monotonic() < deadline:
        time.sleep(1)
    log = Path(state["last_run"]["log"]).read_text()
    assert "Running stage 'register'" in log, log[-3000:]
    # Retrained on exactly the data the champion saw: the same model again, so it is reported, not offered.
    registration = json.loads((project / "reports/register/registration.json").read_text())
    assert registration["registered"] is False and "same data as champion v1" in registration["reason"]
    assert "add feedback" in registration["reason"]
    trigger = json.loads((project / "monitoring/retrain_trigger.json").read_text())
    assert trigger["status"] == "open" and "same data as champion v1" in trigger["outcome"]  # the alert stays open

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    check = subprocess.run([sys.executable, "-c",
                            "import json; from defectops import registry;"
                            "print(json.dumps([[v.version, v.tags['approval'], v.tags['trigger']]"
                            " for v in registry.list_versions('defectops-detector')]))"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(check.stdout) == [["1", "approved", "manual"]], check.stderr[-2000:]

    again = _run(project, "defectops.cli", "monitor", *window)
    assert json.loads(again.stdout)["retrain"]["action"].startswith("skipped: cool-down")

    history = subprocess.run([sys.executable, "-c",
                              "import mlflow; mlflow.set_tracking_uri(__import__('defectops.tracking').tracking."
                              "tracking_uri()); runs = mlflow.search_runs(experiment_names=['defectops-monitoring']);"
                              "print(len(runs), sorted(set(runs['tags.status'])))"],
                             env=env, capture_output=True, text=True, timeout=120)
    # the demo's two checks (ok, then drift) and our five
    assert history.stdout.split(maxsplit=1) == ["7", "['drift', 'ok']\n"], history.stderr[-2000:]
    assert not (project / "network_attempts.jsonl").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(project, *args, env_extra=None):
    """A defectops server process in the project, stopped by pid by the caller."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "defectops.cli", *args, "--port", str(port)], cwd=project,
                            env={**project_env(project), **(env_extra or {})}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            if httpx.get(f"{url}/{'readyz' if args[0] == 'serve' else 'login'}", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"{args[0]} did not come up")


def _line_images(n: int) -> list[tuple[str, bytes, bool]]:
    """New parts under the shifted lamp: (part id, PNG, defective), never seen by any split."""
    import io

    from PIL import Image

    from defectops.components.ingest import synthetic
    from defectops.demo import shift_lighting

    parts = []
    for i in range(n):
        pixels, boxes = synthetic.make_image(991, i, 64, defect_free=i % 3 == 0)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        parts.append((f"LINE-{i:03d}", shift_lighting(buf.getvalue()), bool(boxes)))
    return parts


def _answer_current(page, truth: dict[str, bool]) -> str:
    """Answer the item on screen with the keyboard, as the part truly is; returns its part id."""
    page.wait_for_selector("canvas[data-ready='1']")
    part = page.inner_text("#part")
    with page.expect_navigation():
        page.keyboard.press("d" if truth[part] else "g")
    return part


def test_inspectors_answers_train_the_next_version(project, demo, tmp_path):
    """serve -> review-band parts -> the inspector's queue in Chromium (login, keyboard answers, a moved box) ->
    feedback export -> disagreement -> retraining on base + feedback -> a pending version that says so, which
    neither an inspector nor a labeller may approve."""
    playwright = pytest.importorskip("playwright.sync_api")
    import shutil as _shutil

    chromium = _shutil.which("chromium") or _shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    import httpx

    from defectops.feedback import answers as feedback_answers
    from defectops.records.store import DecisionStore
    from defectops.ui import auth

    params = yaml.safe_load((project / "params.yaml").read_text())
    # Every part goes to a person: a two-epoch model's threshold sits near 0, so the band reaches far above it.
    params["serve"]["review_band"] = [0.0, 1e6]
    (project / "params_line.yaml").write_text(yaml.safe_dump(params))
    key = "line-key-0123456789"
    server, url = _start(project, "serve", "--params", "params_line.yaml", env_extra={"DEFECTOPS_API_KEYS": key})
    parts = _line_images(12)
    truth = {part: defective for part, _, defective in parts}
    try:
        decided = [httpx.post(f"{url}/v1/predict", content=body, timeout=30,
                              headers={"x-api-key": key, "x-part-id": part, "content-type": "image/png"}).json()
                   for part, body, _ in parts]
    finally:
        server.terminate()
        server.wait(timeout=30)
    review = [d["part_id"] for d in decided if d["decision"] == "review"]
    assert len(review) >= 6, [d["decision"] for d in decided]
    store = DecisionStore(project / "monitoring/decisions.db")
    assert {r["part_id"] for r in store.query(decision="review", limit=None)} >= set(review)

    users = project / "ui_users.json"
    passwords = {"ines": "inspects-parts-2026", "qa.lead": "quality-first-2026", "second.approver": "also-checks-2026"}
    auth.add_user(users, "ines", passwords["ines"], ("inspector",))
    auth.add_user(users, "qa.lead", passwords["qa.lead"])
    auth.add_user(users, "second.approver", passwords["second.approver"])
    ui, site = _start(project, "ui", "--users", "ui_users.json")
    answered, started = [], datetime.now().astimezone()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])

            def login(name):
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{site}/login")
                page.fill("input[name=username]", name)
                page.fill("input[name=password]", passwords[name])
                page.click("button[type=submit]")
                page.wait_for_selector("#user")
                return page

            page = login("ines")
            assert "/inspect/" in page.url  # an inspector lands on the queue
            page.wait_for_selector("canvas[data-ready='1']")
            assert page.inner_text("#part") in review  # the newest review first
            # The heatmap: EigenCAM of this version's hash-checked weights, loaded on the first request.
            page.wait_for_function("() => { const i = document.querySelector('#heatmap');"
                                   " return i.complete && i.naturalWidth > 0; }", timeout=120_000)
            # One box moved by hand before answering (the first with a box, else one drawn).
            while json.loads(page.get_attribute("canvas", "data-boxes")) == [] or not truth[page.inner_text("#part")]:
                answered.append(_answer_current(page, truth))
            moved_part = page.inner_text("#part")
            before = json.loads(page.input_value("#boxes"))
            scale = float(page.get_attribute("canvas", "data-scale"))
            width = int(page.get_attribute("canvas", "width")) / scale
            # The model's top box (drawn last: the one on top) resized by its corner, then moved, as an inspector
            # fits a box to the defect.
            picked = len(before) - 1
            x1, y1, x2, y2 = before[picked]["box"]
            shrink = min(16.0, (x2 - x1) / 2, (y2 - y1) / 2)
            dx, dy = (3 if x1 + 3 <= width - (x2 - x1 - shrink) else -3), 3
            box = page.locator("canvas").bounding_box()

            def drag(from_xy, to_xy):
                page.mouse.move(box["x"] + from_xy[0] * scale, box["y"] + from_xy[1] * scale)
                page.mouse.down()
                page.mouse.move(box["x"] + to_xy[0] * scale, box["y"] + to_xy[1] * scale, steps=4)
                page.mouse.up()

            drag((x2 - 0.5, y2 - 0.5), (x2 - shrink, y2 - shrink))
            drag((x1 + (x2 - shrink - x1) / 2, y1 + (y2 - shrink - y1) / 2),
                 (x1 + (x2 - shrink - x1) / 2 + dx, y1 + (y2 - shrink - y1) / 2 + dy))
            relabel = next(o for o in page.eval_on_selector_all("#class-name option", "os => os.map(o => o.value)")
                           if o != before[picked]["class_name"])
            page.select_option("#class-name", relabel)  # the selected (just moved) box gets the right class
            after = json.loads(page.input_value("#boxes"))
            assert after[picked]["class_name"] == relabel
            expected = [x1 + dx, y1 + dy, x2 - shrink + dx, y2 - shrink + dy]
            assert after[picked]["box"] == pytest.approx(expected, abs=1.0), (before[picked], after[picked])
            assert [b for i, b in enumerate(after) if i != picked] == [
                {"class_name": b["class_name"], "box": b["box"]} for i, b in enumerate(before) if i != picked]
            answered.append(_answer_current(page, truth))
            while len(answered) < len(review) - 1:
                answered.append(_answer_current(page, truth))
            count = int(page.inner_text("#shift-count"))
            page.screenshot(path=str(tmp_path / "inspect.png"), full_page=True)
            shift_now = feedback_answers.shift_start(datetime.now().astimezone(), params["feedback"]["shift_starts"])
            assert count == len(answered) or shift_now > started  # a shift that began mid-test counts from 0
            # An inspector cannot decide about models, whatever form they post.
            refused = page.request.post(f"{site}/versions/1/decide", form={
                "action": "approve", "reason": "x", "csrf": page.get_attribute("input[name=csrf]", "value")})
            assert refused.status == 403 and "needs the role approver" in refused.text()

            lead = login("qa.lead")  # an approver answers one part too: their label, their conflict
            lead.goto(f"{site}/inspect")
            answered.append(_answer_current(lead, truth))
            browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=30)

    stored = {a["part_id"]: a for a in feedback_answers.answered(store)}
    assert set(answered) <= set(stored) and len(stored) == len(answered)
    assert {stored[p]["answer"] for p in answered} == {"defect", "good"}
    model_boxes = [b["box"] for b in store.query(part=moved_part)[0]["boxes"]]
    moved = stored[moved_part]["boxes"][picked]["box"]
    assert moved != model_boxes[picked] and moved == pytest.approx(expected, abs=1.0)  # what was stored
    assert stored[moved_part]["boxes"][picked]["class_name"] == relabel
    store.close()

    export = _run(project, "defectops.cli", "feedback", "export")
    assert export.returncode == 0, export.stderr[-3000:]
    exported = json.loads(export.stdout)
    assert exported["images"] >= 4 and (project / "data/feedback.dvc").exists()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["extra_sources"] = ["data/feedback"]
    params["feedback"]["min_answers"] = 3
    params["monitor"]["retrain"]["cooldown_minutes"] = 0  # the earlier drift alert's cool-down is not this test's
    params["evaluate"]["gate_margin"] = 1.0  # two-epoch models: the loop is under test here, not the gate
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    check = _run(project, "defectops.cli", "monitor", "--window", str(len(parts)))
    assert check.returncode == 0, check.stderr[-3000:]
    verdict = json.loads(check.stdout)
    assert verdict["retrain"]["action"] == "retraining started", verdict
    trigger = json.loads((project / "monitoring/retrain_trigger.json").read_text())
    assert trigger["kind"] == "disagreement" and trigger["disagreement_rate"] > 0.2
    state = json.loads((project / "monitoring/retrain_state.json").read_text())
    deadline = time.monotonic() + 900
    while _alive(state["last_run"]["pid"]) and time.monotonic() < deadline:
        time.sleep(1)
    log = Path(state["last_run"]["log"]).read_text()
    assert "Running stage 'register'" in log, log[-3000:]

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    listing = subprocess.run([sys.executable, "-c",
                              "import json; from defectops import registry;"
                              "print(json.dumps([[v.version, v.tags] for v in registry.list_versions("
                              "'defectops-detector')]))"], env=env, capture_output=True, text=True, timeout=120)
    versions = dict(json.loads(listing.stdout))
    assert set(versions) == {"1", "2"}, listing.stderr[-2000:]
    new = versions["2"]
    assert (new["approval"], new["trigger"]) == ("pending", "disagreement")
    assert new["feedback_images"] == str(exported["images"])
    assert float(new["disagreement_rate"]) == pytest.approx(trigger["disagreement_rate"], abs=1e-4)
    assert new["dataset_md5"] != versions["1"]["dataset_md5"]  # the feedback changed the training data
    assert set(new["feedback_labellers"].split(",")) == {"ines", "qa.lead"}

    def approve(person):
        return subprocess.run([sys.executable, "-c", "import sys; from defectops import registry; "
                               "registry.approve('defectops-detector', '2', sys.argv[1], 'feedback reviewed', "
                               "acknowledge=True)",
                               person], cwd=project, capture_output=True, text=True, timeout=120,
                              env={**project_env(project), "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    refused = approve("qa.lead")
    assert refused.returncode != 0 and "labelled inspector feedback" in refused.stderr
    assert approve("second.approver").returncode == 0
    assert not (project / "network_attempts.jsonl").exists()

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from defectops.components.monitor.step import MonitorConfig, MonitorError, monitor
from defectops.drift_features import image_features
from defectops.records.store import DecisionStore


def decision_row(features: dict, version: str = "1", **extra) -> dict:
    """One decision as the endpoint records it."""
    return {"time": datetime.now(UTC), "model_name": "m", "model_version": version, "role": "champion",
            "precision": "fp32", "decision": "accept", "score": features.get("max_confidence", 0.0),
            "threshold": 0.5, "boxes": [], "features": features, "image_sha256": "0" * 64, "latency_ms": 1.0,
            **extra}


def _write(tmp_path, reference, current):
    reference.to_csv(tmp_path / "reference.csv", index=False)
    DecisionStore(tmp_path / "decisions.db").record_many([decision_row(r) for r in current.to_dict("records")])


def _frame(rng, n, brightness):
    return pd.DataFrame({"brightness": rng.normal(brightness, 8, n), "contrast": rng.normal(20, 2, n),
                         "sharpness": rng.normal(300, 30, n), "max_confidence": rng.uniform(0, 1, n)})


@pytest.mark.e2e
def test_no_drift_on_the_same_distribution(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path, _frame(rng, 200, 120), _frame(rng, 100, 120))
    verdict = monitor(MonitorConfig(), tmp_path / "reference.csv", str(tmp_path / "decisions.db"), tmp_path / "out")
    assert verdict["status"] == "ok" and verdict["drift"] is False
    assert not (tmp_path / "out" / "retrain_trigger.json").exists()
    assert (tmp_path / "out" / "drift_report.html").stat().st_size > 10_000


def test_lighting_shift_is_drift_and_writes_a_trigger(tmp_path):
    rng = np.random.default_rng(1)
    current = _frame(rng, 100, 170)
    current["contrast"] *= 1.6
    _write(tmp_path, _frame(rng, 200, 120), current)
    verdict = monitor(MonitorConfig(), tmp_path / "reference.csv", str(tmp_path / "decisions.db"), tmp_path / "out")
    assert verdict["status"] == "drift"
    assert {"brightness", "contrast"} <= set(verdict["drifted_features"])
    trigger = json.loads((tmp_path / "out" / "retrain_trigger.json").read_text())
    assert trigger["action"] == "retrain" and trigger["model_versions"] == ["1"]
    html = (tmp_path / "out" / "drift_report.html").read_text()
    assert "brightness" in html


def test_small_window_gives_no_verdict(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path, _frame(rng, 50, 120), _frame(rng, 5, 200))
    verdict = monitor(MonitorConfig(min_window=30), tmp_path / "reference.csv", str(tmp_path / "decisions.db"),
                      tmp_path)
    assert verdict["status"] == "insufficient_data" and verdict["drift"] is False


def test_missing_store_is_a_clear_error(tmp_path):
    _frame(np.random.default_rng(3), 10, 100).to_csv(tmp_path / "reference.csv", index=False)
    with pytest.raises(MonitorError, match="no decision store yet"):
        monitor(MonitorConfig(), tmp_path / "reference.csv", str(tmp_path / "none.db"), tmp_path)


def test_features_react_to_lighting_and_blur():
    rng = np.random.default_rng(4)
    img = rng.integers(60, 180, (64, 64, 3)).astype(np.uint8)
    base = image_features(img)
    brighter = image_features(np.clip(img.astype(int) + 50, 0, 255).astype(np.uint8))
    assert brighter["brightness"] > base["brightness"] + 40
    import cv2

    assert image_features(cv2.GaussianBlur(img, (0, 0), 2))["sharpness"] < base["sharpness"] / 4


def _rendered_rows(html_path):
    """Open the report in headless Chromium (JS executed) and return each table row's text."""
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={html_path.parent / 'chromium-profile'}", "--virtual-time-budget=15000",
                          "--dump-dom", html_path.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    rows = re.findall(r"<tr.*?</tr>", dom, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in rows]


@pytest.mark.e2e
def test_drift_report_opens_and_shows_the_drifted_features(tmp_path):
    rng = np.random.default_rng(5)
    current = _frame(rng, 120, 175)
    _write(tmp_path, _frame(rng, 200, 120), current)
    monitor(MonitorConfig(), tmp_path / "reference.csv", str(tmp_path / "decisions.db"), tmp_path / "out")
    rows = _rendered_rows(tmp_path / "out" / "drift_report.html")
    by_feature = {r.split()[0]: r for r in rows if r and r.split()[0] in {"brightness", "contrast", "sharpness"}}
    assert "Detected" in by_feature["brightness"] and "Not Detected" not in by_feature["brightness"]
    assert "Not Detected" in by_feature["contrast"]

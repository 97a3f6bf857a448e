import json

import cv2
import numpy as np
import pytest

from defectops.components.evaluate.evidence import false_negative_grid, per_class_recall
from defectops.components.evaluate.threshold import recall_lower_bound
from defectops.dataset import Box
from defectops.ui import auth


def test_clopper_pearson_lower_bound():
    assert recall_lower_bound(59, 59) == pytest.approx(0.05 ** (1 / 59))  # all caught: alpha^(1/n)
    assert recall_lower_bound(59, 59) > 0.95 > recall_lower_bound(58, 59)
    assert recall_lower_bound(0, 10) == 0.0 and np.isnan(recall_lower_bound(0, 0))
    assert recall_lower_bound(38, 39) < 38 / 39


def test_per_class_recall_counts_images_showing_the_class():
    labels = {"a": [Box(0, .5, .5, .1, .1)], "b": [Box(0, .5, .5, .1, .1), Box(1, .2, .2, .1, .1)], "c": []}
    rows = per_class_recall(["a", "b", "c"], np.array([0.9, 0.1, 0.5]), labels, ["scratch", "pit"], 0.5)
    assert rows[0] == {"class": "scratch", "images": 2, "caught": 1, "recall": 0.5}
    assert rows[1] == {"class": "pit", "images": 1, "caught": 0, "recall": 0.0}


def test_false_negative_grid_draws_the_missed_boxes(tmp_path):
    img = np.full((64, 64, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    out = false_negative_grid(tmp_path, ["x.png"], {"x.png": [Box(0, .5, .5, .5, .5)]}, ["scratch"],
                              tmp_path / "fn.png", tile=64, columns=2)
    grid = cv2.imread(str(out))
    assert grid.shape == (64, 128, 3)
    assert (grid[:, :64, 2] > 200).sum() > 50  # red box on the missed image
    assert cv2.imread(str(false_negative_grid(tmp_path, [], {}, [], tmp_path / "none.png"))) is not None


def test_passwords_are_salted_hashes(tmp_path):
    users = tmp_path / "users.json"
    auth.add_user(users, "qa.lead", "long enough password")
    auth.add_user(users, "ops", "long enough password")
    stored = json.loads(users.read_text())["users"]
    assert "long enough password" not in users.read_text()
    assert stored["qa.lead"]["hash"] != stored["ops"]["hash"]  # same password, different salt
    loaded = auth.load_users(users)
    assert auth.check_password(loaded, "qa.lead", "long enough password")
    assert not auth.check_password(loaded, "qa.lead", "wrong password")
    assert not auth.check_password(loaded, "nobody", "long enough password")
    with pytest.raises(auth.DefectopsError, match="at least 8"):
        auth.add_user(users, "x", "short")

"""Optuna search on tiny data: defaults as trial 0, child runs in MLflow, a best_params file train accepts."""

import mlflow
import pytest
import yaml

from defectops.components.train.step import TrainConfig
from defectops.components.tune.step import SearchRange, TuneConfig, tune
from defectops.tracking import tracking_uri


@pytest.mark.e2e
def test_study_records_trials_and_best_params(tiny_dataset, tmp_path):
    train_config = TrainConfig(epochs=2, imgsz=64, batch=8, workers=0, checkpoint_dir=tmp_path / "ck")
    config = TuneConfig(trials=3, target_recall=0.9, space={"lr0": SearchRange(low=0.0003, high=0.005, log=True)})
    metrics = tune(config, train_config, tiny_dataset, tmp_path / "tune")
    assert metrics["trials"] == 3 and metrics["completed"] + metrics["pruned"] == 3
    best = yaml.safe_load((tmp_path / "tune" / "best_params.yaml").read_text())["train"]
    assert 0.0003 <= best["lr0"] <= 0.005
    trials = (tmp_path / "tune" / "trials.csv").read_text().splitlines()
    assert len(trials) == 4 and "params_lr0" in trials[0]
    assert f"{train_config.lr0}" in trials[1]  # trial 0 ran the defaults
    mlflow.set_tracking_uri(tracking_uri())
    children = mlflow.search_runs(experiment_names=["defectops"],
                                  filter_string=f"tags.mlflow.parentRunId = '{metrics['parent_run_id']}'")
    assert len(children) == 3
    # best_params.yaml holds the settings of the trial trials.csv scores highest (the defaults on a tie)
    import csv

    table = list(csv.DictReader((tmp_path / "tune" / "trials.csv").read_text().splitlines()))
    scored = [r for r in table if r["state"] == "COMPLETE"]
    top = max(float(r["value"]) for r in scored)
    winner = min(int(r["number"]) for r in scored if float(r["value"]) == top)
    assert metrics["best_trial"] == winner
    assert best["lr0"] == pytest.approx(float(table[winner]["params_lr0"]))
    merged = TrainConfig.model_validate({**train_config.model_dump(), **best})
    assert merged.lr0 == best["lr0"]


@pytest.mark.parametrize("space, message", [({"lr00": {"low": 0.1, "high": 0.2}}, "not train settings"),
                                            ({"lr0": {"low": 0.2, "high": 0.1}}, "low < high"),
                                            ({"mosaic": {"type": "categorical"}}, "needs 'choices'")])
def test_search_space_is_validated(space, message):
    with pytest.raises(ValueError, match=message):
        TuneConfig(space=space)


def test_objective_is_precision_at_target_recall_with_ties_to_the_wider_gap():
    from defectops.components.tune.step import recall_first_objective

    truth = [True] * 4 + [False] * 4
    tight = recall_first_objective([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2, 0.1], truth, 1.0)
    wide = recall_first_objective([0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.1, 0.0], truth, 1.0)
    leaky = recall_first_objective([0.9, 0.8, 0.7, 0.6, 0.65, 0.1, 0.1, 0.0], truth, 1.0)
    assert tight["precision"] == wide["precision"] == 1.0 and wide["objective"] > tight["objective"]
    assert wide["gap"] == pytest.approx(0.4) and tight["gap"] == pytest.approx(0.05)
    assert leaky["precision"] == 0.8 and leaky["objective"] < tight["objective"]  # precision dominates the gap

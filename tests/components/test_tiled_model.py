"""A model trained on tiles is evaluated and served on tiles, and both score an image alike."""

import json

import cv2
import numpy as np
import pytest

from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.step import export_onnx
from defectops.components.evaluate.scoring import load_model, score_images, tiled_boxes
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.train.step import TrainConfig, train
from defectops.dataset import read_manifest, read_names


@pytest.fixture(scope="module")
def tiled(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiled")
    metrics = train(TrainConfig(epochs=1, imgsz="auto", tile=32, tile_overlap=0.25, batch=8,
                                checkpoint_dir=root / "ck"), tiny_dataset, root / "model")
    return root, metrics


def test_training_on_tiles_records_the_tiling(tiled):
    root, metrics = tiled
    run = json.loads((root / "model" / "run.json").read_text())
    assert (run["imgsz"], run["tile"], run["tile_overlap"]) == (32, 32, 0.25) == (metrics["imgsz"], metrics["tile"],
                                                                                0.25)


def test_evaluate_scores_whole_images_through_tiles(tiled, tiny_dataset):
    root, _ = tiled
    metrics = evaluate(EvaluateConfig(model_name="tiled-none"), root / "model", tiny_dataset, root / "eval")
    assert 0 <= metrics["test_map50"] <= 1 and 0 <= metrics["test_map50_95"] <= metrics["test_map50"]
    rows = (root / "eval" / "per_image.csv").read_text().splitlines()[1:]
    assert {r.split(",")[1] for r in rows} == {r["path"] for r in read_manifest(tiny_dataset)
                                               if r["split"] in ("val", "test")}  # whole images, not tiles


def test_endpoint_and_evaluate_agree_on_a_tiled_image(tiled, tiny_dataset, tmp_path):
    root, _ = tiled
    weights = root / "model" / "weights" / "best.pt"
    onnx_path, task, classes = export_onnx(weights, 32, tmp_path)
    names = read_names(tiny_dataset)
    (tmp_path / "model.json").write_text(json.dumps({"task": task, "output_classes": classes, "threshold": 0.5,
                                                     "imgsz": 32, "names": names, "tile": 32, "tile_overlap": 0.25}))
    detector = OnnxDetector(tmp_path)
    model = load_model(weights)
    paths = [r["path"] for r in read_manifest(tiny_dataset) if r["split"] == "test"][:4]
    _, offline = score_images(model, tiny_dataset, paths, 32, 8, "cpu", names, (32, 0.25))
    for rel, expected in zip(paths, offline):
        bgr = cv2.imread(str(tiny_dataset / rel))
        detections, embedding = detector.infer(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert max((d.score for d in detections), default=0.0) == pytest.approx(expected, rel=0.02), rel
        # the same boxes: torch in evaluate, ONNX Runtime at the endpoint, one tiling and merge
        offline_boxes = tiled_boxes(model, bgr, (32, 0.25), 32, "cpu")
        assert len(detections) == len(offline_boxes) > 0
        for served, box in zip(detections, offline_boxes):
            assert served.class_id == box.class_id and served.box == pytest.approx(box.box, abs=1.0)
        assert embedding is not None and np.isfinite(embedding).all()


def test_a_tiled_model_is_explained_tile_by_tile_over_the_whole_frame(tiled, tiny_dataset, tmp_path):
    import io
    import shutil

    from PIL import Image

    from defectops.components.deploy.explain import Explainer

    root, _ = tiled
    shutil.copyfile(root / "model" / "weights" / "best.pt", tmp_path / "best.pt")
    (tmp_path / "model.json").write_text(json.dumps({"imgsz": 32, "tile": 32, "tile_overlap": 0.25}))
    explainer = Explainer(tmp_path)
    frame = cv2.cvtColor(cv2.imread(str(tiny_dataset / read_manifest(tiny_dataset)[0]["path"])), cv2.COLOR_BGR2RGB)
    frame = np.ascontiguousarray(np.concatenate([frame, frame[:, :40]], axis=1)[:50])  # 50 x 104: edge tiles are cut
    heat = np.asarray(Image.open(io.BytesIO(explainer.heatmap_png(frame))))
    assert heat.shape == (50, 104, 3)
    cam = explainer._tiled_cam(frame, 32, 0.25)
    assert cam.shape == (50, 104) and cam.max() > 0  # every pixel lies in a tile; some tile scored something

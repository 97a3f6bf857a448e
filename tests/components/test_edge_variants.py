"""Faster variants at the edge: `deploy --precision int8 / --runtime openvino` puts each through the re-validation
gate (its own val-tuned threshold, test recall and precision against the FP32 export), the registry records the
verified and the refused side by side, the endpoint loads only a verified file, and micro-batching gives every
caller the outputs a call of its own would have."""

import dataclasses
import json
import shutil
import threading

import numpy as np
import onnx
import pytest

from defectops.components.deploy import step
from defectops.components.deploy.batching import MicroBatcher
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.serve_config import ServeConfig
from defectops.components.deploy.serving import load_verified
from defectops.components.deploy.step import DeployConfig, deploy
from defectops.components.deploy.variants import VariantCheck, judge
from defectops.components.deploy.verify import (
    REFUSED_TAG,
    DeployError,
    artefact_tags,
    recorded_variants,
    verify_artefacts,
    version_dir,
)
from defectops.components.evaluate.step import EvaluateConfig, evaluate
from defectops.components.ingest.step import IngestConfig, ingest
from defectops.components.train.step import TrainConfig, train
from defectops.dataset import read_manifest, sha256_file
from defectops.registries import open_registry

from ..masked_parts import write_parts
from .conftest import register_and_approve

MODEL = "variant-test-detector"


@pytest.fixture(scope="module")
def quantisable_detector(tmp_path_factory):
    """A detector that learned its parts (test recall and precision 1.0 in FP32), so a damaged variant shows.
    Defect radii from 6 px: with 3 px pits at 96 px the FP32 model itself missed 2 of 10 test defects on one
    machine (scores 0.22 and 0.38) while CI's caught all, so the INT8 twin passed or failed by the machine."""
    root = tmp_path_factory.mktemp("variants")
    write_parts(root / "src", n_per_class=32, n_good=32, radii=(6, 16))
    ingest(IngestConfig(source="folders", path=root / "src"), root / "raw")
    train(TrainConfig(imgsz=96, epochs=80, lr0=0.002, mosaic=0.0, checkpoint_dir=root / "ckpt"), root / "raw",
          root / "model")
    evaluate(EvaluateConfig(model_name=MODEL), root / "model", root / "raw", root / "eval")
    register_and_approve(MODEL, root / "model", root / "eval", tmp_path_factory)
    return root / "raw"


@pytest.fixture
def int8_deployed(quantisable_detector, tmp_path_factory):
    """Deployed INT8 for this test: the registry's record of v1's deployment is this one, whatever ran before."""
    root = tmp_path_factory.mktemp("int8-deploy")
    return root, deploy(DeployConfig(model_name=MODEL, precision="int8"), quantisable_detector, root)


def _black_frame_calibration(monkeypatch) -> None:
    """A camera left capped during calibration: the INT8 model it gives loses what FP32 found."""
    calibrate = step.calibration_blobs
    monkeypatch.setattr(step, "calibration_blobs",
                        lambda *args: (np.zeros_like(blob) for blob in calibrate(*args)))


def test_the_gate_refuses_lost_recall_or_precision_and_passes_the_rest():
    reference = VariantCheck("fp32-onnxruntime", "a", 0.3, 1.0, 0.97, 0.90, 5.0, "reference")
    fine = VariantCheck("int8-onnxruntime", "b", 0.28, 1.0, 0.96, 0.89, 2.5, "measured")
    assert judge(fine, reference, 0.95, 0.02) == (dataclasses.replace(fine, verdict="verified"), None)
    lost_recall = dataclasses.replace(fine, test_recall=0.93)
    verdict, reason = judge(lost_recall, reference, 0.95, 0.02)
    assert (verdict.verdict, reason) == ("refused",
                                         "test recall 0.9300 < target 0.95 (at its val-tuned threshold 0.28)")
    verdict, reason = judge(dataclasses.replace(fine, test_precision=0.85), reference, 0.95, 0.02)
    assert verdict.verdict == "refused" and reason == (
        "test precision 0.8500 < FP32's 0.9000 - 0.02 (deploy.max_precision_drop) (at its val-tuned threshold 0.28)")
    verdict, reason = judge(dataclasses.replace(fine, test_recall=float("nan")), reference, 0.95, 0.02)
    assert verdict.verdict == "refused" and reason.startswith("test recall is undefined: the test split holds no "
                                                              "defective image")
    with pytest.raises(ValueError, match="fp16.*use runtime openvino"):
        DeployConfig(precision="fp16")


def test_an_int8_variant_is_verified_recorded_and_served_at_its_own_threshold(int8_deployed, quantisable_detector):
    root, metrics = int8_deployed
    checked = metrics["variants"]["int8-onnxruntime"]
    assert metrics["precision"] == "int8" and checked["verdict"] == "verified"
    assert checked["test_recall"] >= 0.95 and metrics["variants"]["fp32-onnxruntime"]["verdict"] == "reference"
    folder = version_dir(root, "1")
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 20  # the backbone and head convs run INT8
    meta = json.loads((folder / "model.json").read_text())
    info = open_registry(MODEL).champion()
    assert meta["threshold"] == checked["threshold"] and meta["evaluated_threshold"] == float(info.tags["threshold"])
    recorded = recorded_variants(info.tags)["int8-onnxruntime"]
    assert recorded["verdict"] == "verified" and recorded["sha256"] == sha256_file(folder / "model.onnx")
    assert info.tags["deployed_variant"] == "int8-onnxruntime"

    # The endpoint loads it and calls exactly the test images the gate counted.
    served = load_verified(ServeConfig(model_name=MODEL, deploy_root=root), info).detector
    test = [r["path"] for r in read_manifest(quantisable_detector) if r["split"] == "test"]
    flagged = sum(max((d.score for d in served.predict(served.decode((quantisable_detector / p).read_bytes()))),
                      default=0.0) >= served.threshold for p in test)
    assert served.meta["precision"] == "int8" and flagged == checked["test_flagged"]


def test_a_damaged_calibration_is_refused_and_what_serves_stays_verified(int8_deployed, quantisable_detector,
                                                                        monkeypatch):
    root, _ = int8_deployed
    folder = version_dir(root, "1")
    before = sha256_file(folder / "model.onnx")
    _black_frame_calibration(monkeypatch)
    with pytest.raises(DeployError, match="int8-onnxruntime refused by the re-validation gate: .*test "
                                          "(recall|precision)") as refused:
        deploy(DeployConfig(model_name=MODEL, precision="int8"), quantisable_detector, root)
    assert refused.value.exit_code == 4
    assert sha256_file(folder / "model.onnx") == before  # nothing deployed
    info = open_registry(MODEL).champion()
    assert recorded_variants(info.tags, REFUSED_TAG)["int8-onnxruntime"]["verdict"] == "refused"
    assert recorded_variants(info.tags)["int8-onnxruntime"]["sha256"] == before  # the verified record stands
    load_verified(ServeConfig(model_name=MODEL, deploy_root=root), info)  # and the endpoint still loads it


def test_the_endpoint_never_loads_an_unverified_variant(int8_deployed, tmp_path):
    """Even with the deploy hashes re-recorded to match (someone with registry write access), a file is served only
    with the gate's verified record of that very file and threshold."""
    root, _ = int8_deployed
    info = open_registry(MODEL).champion()

    def tampered(edit) -> tuple:
        folder = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(version_dir(root, "1"), folder)
        edit(folder)
        return folder, dataclasses.replace(info, tags={**info.tags, **artefact_tags(folder)})

    def edit_meta(**changes):
        def edit(folder):
            meta = json.loads((folder / "model.json").read_text())
            (folder / "model.json").write_text(json.dumps({**meta, **changes}))
        return edit

    never_gated = tampered(edit_meta(runtime="openvino"))  # int8 on openvino: no record at all
    with pytest.raises(DeployError, match="variant int8-openvino .* has no record"):
        verify_artefacts(*never_gated)
    laxer = tampered(edit_meta(threshold=0.01))
    with pytest.raises(DeployError, match="threshold 0.01 differs"):
        verify_artefacts(*laxer)

    def another_file(folder):  # not the bytes the gate scored
        with open(folder / "model.onnx", "ab") as fh:
            fh.write(b"\0")
    swapped = tampered(another_file)
    with pytest.raises(DeployError, match="is not the int8-onnxruntime file the gate verified"):
        verify_artefacts(*swapped)
    without_record = dataclasses.replace(info, tags={k: v for k, v in info.tags.items()
                                                     if not k.startswith("variant/")})
    with pytest.raises(DeployError, match="no record in the registry"):
        verify_artefacts(version_dir(root, "1"), without_record)


def test_micro_batching_gives_each_caller_its_own_outputs(int8_deployed, quantisable_detector):
    root, _ = int8_deployed
    single = OnnxDetector(version_dir(root, "1"))
    paths = [r["path"] for r in read_manifest(quantisable_detector)][:24]
    blobs = [single.blob(single.decode((quantisable_detector / p).read_bytes())) for p in paths]
    alone = [single.runner.run(b) for b in blobs]
    batcher = MicroBatcher(single.runner, max_batch=8, wait_ms=20)
    together: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, batcher.run(blobs[i])))
               for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert batcher.images == len(blobs) and batcher.batches < len(blobs)  # calls were shared
    for i, reference in enumerate(alone):
        for mine, theirs in zip(together[i], reference, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-4, err_msg=f"caller {i}")


def test_the_review_page_shows_the_variants_side_by_side(int8_deployed, quantisable_detector, tmp_path,
                                                         monkeypatch):
    import httpx

    from defectops.ui import auth

    from ..ui.review_site import review_page

    root, _ = int8_deployed
    _black_frame_calibration(monkeypatch)
    with pytest.raises(DeployError, match="refused by the re-validation gate"):  # a refused attempt after it
        deploy(DeployConfig(model_name=MODEL, precision="int8"), quantisable_detector, root)
    auth.add_user(tmp_path / "users.json", "qa.lead", "quality-first-2026")
    with review_page(tmp_path / "users.json", MODEL) as url, httpx.Client(base_url=url) as http:
        token = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": "qa.lead", "password": "quality-first-2026", "csrf": token})
        page = http.get("/versions/1").text
    table = page.split('id="variants"')[1].split("</table>")[0]
    rows = [(row.split("<td>")[1].split("</td>")[0], row.split('class="badge ')[1].split('"')[0])
            for row in table.split("<tr>")[2:]]
    # The refused attempt is listed too, beside (not instead of) the verified file.
    assert {("fp32-onnxruntime", "reference"), ("int8-onnxruntime", "verified"),
            ("int8-onnxruntime", "refused")} == set(rows)
    assert 'id="deployed-variant">int8-onnxruntime<' in page


def test_auto_precision_falls_back_to_fp32_when_the_gate_refuses(quantisable_detector, tmp_path, monkeypatch):
    _black_frame_calibration(monkeypatch)
    metrics = deploy(DeployConfig(model_name=MODEL), quantisable_detector, tmp_path)  # precision: auto
    assert metrics["variants"]["int8-onnxruntime"]["verdict"] == "refused"
    info = open_registry(MODEL).champion()
    assert metrics["precision"] == "fp32" and metrics["threshold"] == float(info.tags["threshold"])
    assert load_verified(ServeConfig(model_name=MODEL, deploy_root=tmp_path), info).detector.meta.get(
        "precision", "fp32") == "fp32"


def test_openvino_runs_the_same_file_through_the_gate(quantisable_detector, tmp_path):
    """Deploying v1 again (to another folder) replaces the registry's record of what v1's deployment is, as on a
    line; the tests that need an INT8 deployment make their own."""
    metrics = deploy(DeployConfig(model_name=MODEL, precision="int8", runtime="openvino"), quantisable_detector,
                     tmp_path)
    checked = metrics["variants"]["int8-openvino"]
    assert checked["verdict"] == "verified" and checked["test_recall"] >= 0.95
    loaded = load_verified(ServeConfig(model_name=MODEL, deploy_root=tmp_path), open_registry(MODEL).champion())
    assert type(loaded.detector.runner).__name__ == "OpenVinoRunner"


def _fixed_shape_graph(source, target, calibration) -> list[str]:
    """A 'quantised' file that loads but cannot take the endpoint's input (its graph is fixed at 32 x 32): how a
    real INT8 file failed, on a tile shape its calibration never had (a QLinearConcat's inputs 16 vs 14 high)."""
    image = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 32, 32])
    out = onnx.helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 3, 32, 32])
    identity = onnx.helper.make_node("Identity", ["images"], ["output0"])
    graph = onnx.helper.make_graph([identity], "fixed", [image], [out])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(target))
    return []


def test_a_variant_that_cannot_run_is_refused_with_the_engines_reason(quantisable_detector, tmp_path, monkeypatch):
    monkeypatch.setattr(step, "quantize_int8", _fixed_shape_graph)
    metrics = deploy(DeployConfig(model_name=MODEL), quantisable_detector, tmp_path / "auto")  # precision: auto
    refused = metrics["variants"]["int8-onnxruntime"]
    assert metrics["precision"] == "fp32" and refused["verdict"] == "refused"
    assert "fails on the endpoint's own inputs" in refused["error"]
    info = open_registry(MODEL).champion()
    assert load_verified(ServeConfig(model_name=MODEL, deploy_root=tmp_path / "auto"), info).detector.meta.get(
        "precision", "fp32") == "fp32"
    with pytest.raises(DeployError, match="int8-onnxruntime refused by the re-validation gate: it fails on the "
                                          "endpoint's own inputs \\(InvalidArgument: .*images"):
        deploy(DeployConfig(model_name=MODEL, precision="int8"), quantisable_detector, tmp_path / "int8")
    assert recorded_variants(open_registry(MODEL).champion().tags, REFUSED_TAG)["int8-onnxruntime"]["verdict"] == \
        "refused"

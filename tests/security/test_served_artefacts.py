"""Every file the endpoint loads is the one deploy recorded in the registry; best.pt is never unpickled unchecked."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from defectops import registry
from defectops.components.deploy.serve_config import ServeConfig
from defectops.components.deploy.server import create_app
from defectops.components.deploy.serving import load_verified
from defectops.components.deploy.verify import DeployError, recorded_variants, version_dir


@pytest.fixture
def export_copy(secured, tmp_path):
    """A private copy of the approved export to tamper with; returns (config, version folder, version info)."""
    name, root, version = secured
    shutil.copytree(version_dir(root, version), version_dir(tmp_path, version))
    config = ServeConfig(model_name=name, deploy_root=tmp_path,
                         records_url=str(tmp_path / "decisions.db"), archive_root=tmp_path / "archive",
                         require_api_key=False)
    return config, version_dir(tmp_path, version), registry.get_version(name, version)


def test_the_untouched_export_loads(export_copy):
    config, _, info = export_copy
    # The evaluated threshold, or the one the re-validation gate tuned for the variant deploy chose (auto: INT8).
    gated = recorded_variants(info.tags).get(info.tags["deployed_variant"], {})
    assert load_verified(config, info).detector.threshold == float(gated.get("threshold", info.tags["threshold"]))


def test_a_laxer_threshold_in_model_json_is_refused(export_copy):
    config, folder, info = export_copy
    meta = json.loads((folder / "model.json").read_text())
    meta["threshold"] = 0.99  # fewer parts stopped: missed defects ship
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    with pytest.raises(DeployError, match=r"model.json: sha256 .* differs from the registry's"):
        load_verified(config, info)


def test_an_export_without_recorded_hashes_is_refused(export_copy):
    config, _, info = export_copy
    tags = {k: v for k, v in info.tags.items() if not k.startswith("deploy_sha256")}
    stripped = registry.VersionInfo(info.name, info.version, info.source, info.run_id, tags, info.aliases)
    with pytest.raises(DeployError, match="no recorded artefact hashes"):
        load_verified(config, stripped)


def test_explain_refuses_a_swapped_best_pt_before_unpickling_it(export_copy, tiny_dataset, monkeypatch):
    config, folder, _ = export_copy
    loaded = []
    import defectops.components.deploy.explain as explain

    monkeypatch.setattr(explain.Explainer, "__init__", lambda self, folder: loaded.append(folder))
    (folder / "best.pt").write_bytes((folder / "best.pt").read_bytes() + b"payload")
    image = (tiny_dataset / "images" / "test").iterdir().__next__().read_bytes()
    with TestClient(create_app(config)) as client:
        assert client.post("/v1/predict", content=image).status_code == 200  # the ONNX model still serves
        reply = client.post("/v1/explain", content=image)
        assert client.get("/healthz").status_code == 200
    assert reply.status_code == 503 and "best.pt: sha256" in reply.json()["detail"]
    assert loaded == []  # the pickle was never opened

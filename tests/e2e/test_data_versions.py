"""Dataset versions with real git and DVC: two committed versions are listed, pushed to the local
remote, and an old one checked out again gives the same manifest, also when re-run."""

import json
import subprocess
import sys

import pytest
import yaml

from .project import make_project, project_env

TINY = {"ingest": {"n_images": 24, "image_size": 64, "seed": 1},
        "validate": {"min_images_per_class": 1}}


def _run(root, *args):
    result = subprocess.run([sys.executable, "-m", *args], cwd=root, env=project_env(root), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _commit(root, message):
    subprocess.run(["git", "add", "dvc.lock", "params.yaml", "dvc.yaml"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", message],
                   cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("versions"), TINY, init_dvc=True)
    _run(root, "dvc", "repro", "validate")  # the data stages only: ingest -> validate
    _run(root, "defectops.cli", "data", "push")
    first_manifest = (root / "data/raw/manifest.csv").read_text()
    first = _commit(root, "dataset v1")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"]["seed"] = 2  # new images: a new dataset version
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _run(root, "dvc", "repro", "validate")
    _run(root, "defectops.cli", "data", "push")
    _commit(root, "dataset v2")
    return root, first, first_manifest


def test_versions_lists_each_committed_dataset_with_its_md5_and_remote_copy(project):
    root, first, _ = project
    versions = json.loads(_run(root, "defectops.cli", "data", "versions", "--json").stdout)
    assert [v["message"] for v in versions] == ["dataset v2", "dataset v1"]
    assert versions[1]["rev"] == first[:10]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    raw_now = next(o for o in lock["stages"]["ingest"]["outs"] if o["path"] == "data/raw")
    assert versions[0]["datasets"]["data/raw"]["md5"] == raw_now["md5"]
    assert versions[0]["datasets"]["data/raw"]["md5"] != versions[1]["datasets"]["data/raw"]["md5"]
    for v in versions:
        assert v["datasets"]["data/raw"]["files"] > 24  # images, labels, manifest, dataset.yaml
        assert v["datasets"]["data/raw"]["in_remote"] is True and v["datasets"]["data/validated"]["in_remote"] is True
    table = _run(root, "defectops.cli", "data", "versions").stdout + _run(root, "defectops.cli", "data",
                                                                           "versions").stderr
    assert first[:10] in table


def test_old_version_checks_out_and_reproduces_the_same_manifest(project):
    root, first, first_manifest = project
    assert (root / "data/raw/manifest.csv").read_text() != first_manifest
    subprocess.run([sys.executable, "-m", "dvc", "gc", "--workspace", "--force"], cwd=root, env=project_env(root),
                   check=True, capture_output=True)  # v1 is gone from the local cache: it must come from the remote
    _run(root, "defectops.cli", "data", "checkout", first)
    assert (root / "data/raw/manifest.csv").read_text() == first_manifest
    _run(root, "dvc", "repro", "--force", "ingest")  # re-running the old version's settings
    assert (root / "data/raw/manifest.csv").read_text() == first_manifest

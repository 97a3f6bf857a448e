"""What may be served, checked where it is loaded: every file of an export hashes to what deploy recorded in
the registry, the threshold is the registry's, and a variant (INT8, another runtime) carries the re-validation
gate's `verified` record of this very file. The endpoint, the inspector's page and deploy import this module;
none of them needs the exporter (step.py) to check what it loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from defectops.dataset import sha256_file
from defectops.errors import RefusedError
from defectops.registry import VersionInfo

REFERENCE = "fp32-onnxruntime"  # what evaluation measured: served without a variant record
VARIANT_TAG = "variant/"  # the last verified (or reference) measurement of each variant: what serving trusts
REFUSED_TAG = "variant_refused/"  # the last refused attempt, kept apart: a refused re-deploy must not unverify
# the file that still serves
VERIFIED, REFUSED = "verified", "refused"


def variant_key(precision: str, runtime: str) -> str:
    return f"{precision}-{runtime}"


def variant_of(meta: dict) -> str:
    """The variant a model.json describes (an export from before variants: the FP32 reference)."""
    return variant_key(meta.get("precision", "fp32"), meta.get("runtime", "onnxruntime"))


def recorded_variants(tags: dict[str, str], prefix: str = VARIANT_TAG) -> dict[str, dict[str, str]]:
    """Variant key -> its recorded fields, as `VariantCheck.tag` wrote them (`REFUSED_TAG`: the refused ones)."""
    return {k[len(prefix):]: dict(pair.split("=", 1) for pair in v.split())
            for k, v in tags.items() if k.startswith(prefix)}


class DeployError(RefusedError):
    """No approved champion, or an exported artefact does not match the registry."""


ARTEFACTS_TAG = "deploy_sha256"
# Everything the endpoint loads from an export: each is hashed into the registry and checked before load.
LOADED_FILES = ("model.onnx", "model.json", "best.pt", "embedding_pca.npz")


def artefact_hashes(folder: Path) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in LOADED_FILES if (folder / name).exists()}


def artefact_tags(folder: Path) -> dict[str, str]:
    """One tag per loaded file (`deploy_sha256/model.onnx`): short values every registry accepts as they are."""
    return {f"{ARTEFACTS_TAG}/{name}": digest for name, digest in artefact_hashes(folder).items()}


def recorded_hashes(tags: dict[str, str]) -> dict[str, str]:
    """File -> sha256 as deploy recorded them (or, for versions deployed before per-file tags, one JSON tag)."""
    prefix = f"{ARTEFACTS_TAG}/"
    per_file = {k[len(prefix):]: v for k, v in tags.items() if k.startswith(prefix)}
    return per_file or json.loads(tags.get(ARTEFACTS_TAG) or "{}")


def verify_artefacts(folder: Path, info: VersionInfo, names: tuple[str, ...] = LOADED_FILES) -> None:
    """Refuse an export whose files differ from what deploy recorded in the registry (or that names none).

    model.json carries the threshold: a file edited to serve with a laxer threshold is caught here,
    and the threshold is also compared with the registry's own tag.
    """
    recorded = recorded_hashes(info.tags)
    if not recorded:
        raise DeployError(f"{info.name} v{info.version} has no recorded artefact hashes ({ARTEFACTS_TAG}); "
                          "re-run 'defectops deploy' so the endpoint can verify what it loads")
    for name in names:
        path = Path(folder) / name
        if name not in recorded:
            if path.exists():
                raise DeployError(f"{path}: not among the files deploy recorded for {info.name} v{info.version}")
            continue
        actual = sha256_file(path) if path.exists() else "missing"
        if actual != recorded[name]:
            raise DeployError(f"{path}: sha256 {actual} differs from the registry's {recorded[name]} for "
                              f"{info.name} v{info.version}; refusing to load a modified artefact")
    if "model.json" in names:
        verify_variant(folder, info)


def verify_variant(folder: Path, info: VersionInfo) -> None:
    """The served threshold is the registry's; a variant (INT8, another runtime) is served only with a verified
    record of this very file. Only the evaluated FP32 ONNX Runtime export needs none."""
    meta = json.loads((Path(folder) / "model.json").read_text())
    key = variant_of(meta)
    expected = info.tags.get("threshold")
    if key != REFERENCE:
        record = recorded_variants(info.tags).get(key, {})
        if record.get("verdict") != VERIFIED:
            raise DeployError(f"{folder}/model.json: variant {key} of {info.name} v{info.version} has "
                              f"{'verdict ' + record['verdict'] if record else 'no record'} in the registry; only a "
                              "variant the re-validation gate verified is served ('defectops deploy --precision')")
        if record.get("sha256") != sha256_file(Path(folder) / "model.onnx"):
            raise DeployError(f"{folder}/model.onnx is not the {key} file the gate verified for {info.name} "
                              f"v{info.version}")
        expected = record["threshold"]
    if expected is not None and float(meta["threshold"]) != float(expected):
        raise DeployError(f"{folder}/model.json: threshold {meta['threshold']} differs from the registry's "
                          f"{expected} for {info.name} v{info.version} ({key})")


def version_dir(deploy_root: Path, version: str) -> Path:
    """Where an exported version lives; the endpoint loads what the registry's aliases point to."""
    return Path(deploy_root) / "versions" / f"v{version}"



"""The KServe manifest must run the same endpoint we test: its probes and command match the app."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from defectops.cli import app

MANIFEST = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "kserve" / "inferenceservice.yaml"


def test_manifest_matches_the_endpoint(endpoint):
    import httpx

    server, _ = endpoint
    service = yaml.safe_load(MANIFEST.read_text())
    assert service["kind"] == "InferenceService" and service["apiVersion"] == "serving.kserve.io/v1beta1"
    container = service["spec"]["predictor"]["containers"][0]
    assert container["command"][:2] == ["defectops", "serve"]
    options = [a for a in container["command"] if a.startswith("--")]
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert all(option in help_text for option in options)
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
    assert container["securityContext"]["runAsNonRoot"] is True
    api_key_env = next(e for e in container["env"] if e["name"] == "DEFECTOPS_API_KEYS")
    assert "secretKeyRef" in api_key_env["valueFrom"]  # keys never inline


def test_manifest_gives_the_read_only_pod_a_writable_tmp_and_the_audit_key():
    """Starlette spools multipart parts over 1 MB to /tmp: on a read-only root they failed with a 400."""
    service = yaml.safe_load(MANIFEST.read_text())
    container = service["spec"]["predictor"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts and not mounts["/tmp"].get("readOnly", False)
    volumes = {v["name"]: v for v in service["spec"]["predictor"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["DEFECTOPS_AUDIT_KEY"]["valueFrom"]  # approvals are verified at serve time
    audit_dir = str(Path(env["DEFECTOPS_AUDIT_LOG"]["value"]).parent)
    assert mounts[audit_dir]["readOnly"] is True
    # Two or more replicas write decisions: to a shared database whose URL (with its password) is a secret.
    assert service["spec"]["predictor"]["minReplicas"] >= 2
    command = container["command"]
    assert command[command.index("--records") + 1] == "$(DEFECTOPS_RECORDS_URL)"
    assert "secretKeyRef" in env["DEFECTOPS_RECORDS_URL"]["valueFrom"]

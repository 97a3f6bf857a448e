"""Every `DEFECTOPS_*` environment variable the code reads, in one table: what it overrides and why it exists.

Settings live in params.yaml (validated per step). An environment variable is kept only where a file cannot
do the job: a secret that must not sit in a tracked file, who is at the keyboard, or a value an engine or a
launcher hands a step it starts. One that beats a params.yaml field says so in the log when it does
(`override`), never silently. The README's settings table is this one; a test keeps them equal to the code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("defectops.environment")


@dataclass(frozen=True)
class Variable:
    overrides: str  # the params.yaml field it beats, or "-" when there is none
    why: str


VARIABLES: dict[str, Variable] = {
    "DEFECTOPS_USER": Variable("-", "who is at the keyboard or notebook (default: the login name); the register "
                                    "step records it as the submitter"),
    "DEFECTOPS_TOKEN": Variable("-", "a sign-in token for registry decisions, instead of the one "
                                     "'defectops login' saved (CI, a second shell)"),
    "DEFECTOPS_API_KEYS": Variable("serve.api_keys_env names it", "the endpoint's API keys: a secret, never in a "
                                                                 "tracked file"),
    "DEFECTOPS_UI_SECRET": Variable("-", "the review page's session key, so sessions survive restarts and span "
                                         "workers: a secret"),
    "DEFECTOPS_PROXY_SECRET": Variable("-", "the shared secret a trusted sign-in proxy sends with its user header: "
                                            "a secret"),
    "DEFECTOPS_AUDIT_LOG": Variable("-", "where the signed audit log lives (default audit/registry_audit.jsonl): "
                                         "one log for every process of a plant, wherever it starts"),
    "DEFECTOPS_AUDIT_KEY": Variable("-", "the audit log's signing key: a secret"),
    "DEFECTOPS_AUDIT_KEY_FILE": Variable("-", "a file holding the audit signing key (default: one in the user's "
                                              "config folder)"),
    "DEFECTOPS_ARTIFACT_ROOT": Variable("-", "where MLflow stores run artefacts when the tracking store is local "
                                             "(default mlartifacts/)"),
    "DEFECTOPS_TRIGGER": Variable("register.trigger", "set by `defectops pipeline submit` and the cloud engines for "
                                                      "the run they start (schedule, drift, disagreement)"),
    "DEFECTOPS_TRIGGER_REF": Variable("-", "what started the run (the drift report, the schedule), set by the "
                                           "launcher beside DEFECTOPS_TRIGGER; recorded on the version"),
    "DEFECTOPS_CHECKPOINT_DIR": Variable("train.checkpoint_dir", "set by the Kubeflow engine to the mounted volume "
                                                                 "a preempted pod resumes from"),
    "DEFECTOPS_WARM_START": Variable("train.weights", "set by the drift retraining launcher "
                                                      "(monitor.retrain.warm_start): start from the champion"),
    "DEFECTOPS_WARM_START_EPOCH_SHARE": Variable("train.epochs", "set beside DEFECTOPS_WARM_START "
                                                                 "(monitor.retrain.warm_start_epoch_share)"),
    "DEFECTOPS_SAGEMAKER_ROOT": Variable("-", "SageMaker's container root (/opt/ml); only tests move it"),
}


def override(name: str, field: str, value):
    """The params.yaml `value` of `field`, or the environment's when `name` is set — said in the log, once per
    process and value, so nobody wonders why the file's setting did not apply."""
    if name not in VARIABLES:
        raise KeyError(f"{name}: not in defectops.environment.VARIABLES; add it there (and to the README) first")
    given = os.environ.get(name)
    if not given:
        return value
    if str(given) != str(value):
        log.warning("%s=%s overrides %s=%s (%s)", name, given, field, value, VARIABLES[name].why)
    return given


def markdown_table() -> str:
    """The README's settings table, from VARIABLES."""
    rows = [f"| `{name}` | {v.overrides} | {v.why} |" for name, v in VARIABLES.items()]
    return "\n".join(["| variable | overrides | why it exists |", "|---|---|---|", *rows])

"""Monitor: Evidently data drift between the deployment reference and what the endpoint saw.

On drift it writes a retraining trigger record; the engine adapter that acts on it comes later.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import Field

from defectops.components.monitor.retrain import RetrainConfig, on_drift
from defectops.config import StepConfig
from defectops.errors import DefectopsError
from defectops.metrics import StepTimer, write_metrics
from defectops.tracking import configure_mlflow


class MonitorConfig(StepConfig):
    features: list[str] = Field(["brightness", "contrast", "sharpness", "noise", "max_confidence",
                                 "n_detections"], min_length=1)
    drift_share: float = Field(0.5, gt=0, le=1, description="Share of drifted features that means 'drift'.")
    critical_features: list[str] = Field([], description="Any one of these drifting means 'drift' on its own.")
    window: int = Field(500, ge=1, description="Most recent logged inferences to compare.")
    min_window: int = Field(30, ge=1, description="Fewer logged inferences than this: no verdict.")
    retrain: RetrainConfig = RetrainConfig()
    log_to_mlflow: bool = Field(False, description="Record every check as an MLflow run with its report.")


class MonitorError(DefectopsError):
    """The inputs of a drift check are missing or malformed."""


def recent_decisions(records: str, window: int) -> pd.DataFrame:
    """The newest `window` decisions from the store, by index: the cost does not grow with history."""
    from defectops.records.store import DecisionStore

    if "://" not in str(records) and not Path(records).exists():
        raise MonitorError(f"{records}: no decision store yet; the endpoint creates it as it serves")
    store = DecisionStore(records)
    try:
        return store.window(window)
    finally:
        store.close()


def reference_for_records(records: str, deploy_root: Path) -> Path:
    """The reference of the model version that made the newest recorded decision."""
    last = recent_decisions(records, 1)
    if last.empty:
        raise MonitorError(f"{records}: no decisions recorded yet; pass --reference")
    from defectops.components.deploy.verify import version_dir

    return version_dir(deploy_root, str(last["model_version"].iloc[-1])) / "reference.csv"


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, features: list[str], drift_share: float,
                 html_path: Path) -> dict:
    """Run Evidently's drift preset; return per-feature p-values/drift flags and the overall share."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    # Every feature is a number; left to guess, Evidently treats small counts (n_detections) as
    # categories and a count never seen in the reference looks like infinite drift.
    definition = DataDefinition(numerical_columns=features)
    with warnings.catch_warnings():
        # Constant columns in tiny windows make scipy divide by zero; the test still answers.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([DataDriftPreset(columns=features, drift_share=drift_share)]).run(
            current_data=Dataset.from_pandas(current[features].astype(float), data_definition=definition),
            reference_data=Dataset.from_pandas(reference[features].astype(float), data_definition=definition))
    snapshot.save_html(str(html_path))
    per_feature, share = {}, 0.0
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            # p-value tests flag drift below the threshold, distance tests above it.
            drifted = score < threshold if "p_value" in config.get("method", "") else score >= threshold
            per_feature[config["column"]] = {"method": config.get("method"), "score": score,
                                             "threshold": threshold, "drifted": drifted}
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    return {"share": share, "features": per_feature}


def monitor(config: MonitorConfig, reference_csv: Path, records: str, out: Path, feedback=None) -> dict:
    """Drift of the newest decisions in the store `records` (a path or URL) against the reference; with
    `feedback` (the FeedbackConfig), inspectors' disagreement with those decisions' versions as well."""
    timer = StepTimer()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference = pd.read_csv(reference_csv)
    current = recent_decisions(records, config.window)
    features = [f for f in config.features if f in reference.columns and f in current.columns]
    if not features and len(current):
        raise MonitorError(f"none of the features {config.features} is in both {reference_csv} and {records}")
    verdict = {"time": datetime.now(UTC).isoformat(timespec="seconds"),
               "reference_rows": len(reference), "current_rows": len(current),
               # e.g. embeddings when the reference set was too small to fit their projection
               "skipped_features": sorted(set(config.features) - set(features))}
    if len(current) < config.min_window or not features:
        verdict.update(status="insufficient_data", drift=False)
    else:
        result = drift_report(reference, current, features, config.drift_share, out / "drift_report.html")
        drifted = sorted(f for f, v in result["features"].items() if v["drifted"])
        is_drift = result["share"] >= config.drift_share or bool(set(drifted) & set(config.critical_features))
        verdict.update(status="drift" if is_drift else "ok", drift=is_drift, drifted_share=result["share"],
                       drifted_features=drifted, features=result["features"], report=str(out / "drift_report.html"))
    versions = sorted(set(current.get("model_version", pd.Series(dtype=str)).astype(str)))
    if feedback is not None and versions:
        from defectops.feedback.trigger import disagreement_check

        verdict["disagreement"] = disagreement_check(records, feedback, versions)
    trigger = None
    if verdict.get("drift"):
        trigger = {"time": verdict["time"], "kind": "drift", "reason": "data drift",
                   "drifted_features": verdict["drifted_features"], "drifted_share": verdict["drifted_share"],
                   "model_versions": versions, "report": verdict["report"], "action": "retrain"}
    exceeded = (verdict.get("disagreement") or {}).get("exceeded")
    if exceeded:  # people overruling the model outrank a statistics test: the retraining is theirs
        trigger = {**(trigger or {"time": verdict["time"], "model_versions": versions, "action": "retrain"}),
                   "kind": "disagreement", "disagreement_rate": exceeded["rate"],
                   "disagreement_answers": exceeded["answers"],
                   "reason": f"inspectors overruled v{exceeded['model_version']} on {exceeded['rate']:.0%} of "
                             f"{exceeded['answers']} answered images"
                             + (" (and data drift)" if trigger else "")}
    if trigger:
        trigger_file = out / "retrain_trigger.json"
        trigger_file.write_text(json.dumps(trigger, indent=2) + "\n")
        verdict["retrain"] = on_drift(trigger, trigger_file, config.retrain, out)
        with open(out / "triggers.jsonl", "a") as fh:
            fh.write(json.dumps({**trigger, "outcome": verdict["retrain"]}) + "\n")
    verdict["seconds"] = timer.seconds()
    write_metrics(out / "verdict.json", verdict)
    if config.log_to_mlflow:
        _log_to_mlflow(verdict, out)
    return verdict


def _log_to_mlflow(verdict: dict, out: Path) -> None:
    """Each check is a run in the 'defectops-monitoring' experiment: the drift history, with its reports."""
    import mlflow

    configure_mlflow("defectops-monitoring")
    with mlflow.start_run(run_name=f"drift-check {verdict['status']}"):
        mlflow.set_tags({"status": verdict["status"], "action": (verdict.get("retrain") or {}).get("action", "")})
        mlflow.log_metrics({"drifted_share": verdict.get("drifted_share", 0.0), "current_rows": verdict["current_rows"],
                            "drift": float(verdict["drift"])})
        mlflow.log_artifact(str(out / "verdict.json"))
        if (out / "drift_report.html").exists() and verdict["status"] != "insufficient_data":
            mlflow.log_artifact(str(out / "drift_report.html"))

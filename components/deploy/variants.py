"""The re-validation gate for faster variants of an export (INT8, another runtime), and how the registry
records each one.

A variant moves scores (quantisation error, a different engine's arithmetic), so the threshold tuned on the
FP32 model can silently lose recall. Each variant is scored on val and test by the endpoint's own code path, gets
its own recall-first threshold (tuned on val, at the recall evaluation tuned for), and is refused when its test
recall at that threshold falls below the line's target or its test precision drops by more than the allowed
amount against the FP32 export scored the same way. The endpoint serves a variant only if the registry holds its
`verified` record with the file's sha256 and threshold (`verify.verify_artefacts`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from defectops.comparison import shortfalls
from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.verify import REFUSED, REFUSED_TAG, VARIANT_TAG, VERIFIED, variant_of
from defectops.components.evaluate.threshold import image_level_metrics, operating_threshold
from defectops.dataset import label_path, read_labels, read_manifest


@dataclass(frozen=True)
class VariantCheck:
    key: str
    sha256: str
    threshold: float
    val_recall: float
    test_recall: float
    test_precision: float
    ms_per_image: float
    verdict: str  # verified | refused | reference (the FP32 export, measured for comparison)

    def tag(self) -> dict[str, str]:
        """One registry tag per variant, `key=value` pairs separated by spaces: short, and characters every
        registry accepts (SageMaker's metadata allows no commas or semicolons)."""
        fields = {**asdict(self), "threshold": repr(float(self.threshold))}
        fields.pop("key")
        prefix = REFUSED_TAG if self.verdict == REFUSED else VARIANT_TAG
        return {prefix + self.key: " ".join(f"{k}={v}" for k, v in fields.items())}


def score_split(detector: OnnxDetector, dataset: Path, paths: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """The endpoint's image score (best detection) per image, the truth, and ms per image for predict."""
    scores, seconds = [], 0.0
    for path in paths:
        rgb = detector.decode((dataset / path).read_bytes())
        started = time.perf_counter()
        scores.append(max((d.score for d in detector.predict(rgb)), default=0.0))
        seconds += time.perf_counter() - started
    truth = np.array([bool(read_labels(label_path(dataset, p))) for p in paths])
    return np.array(scores), truth, 1000 * seconds / max(len(paths), 1)


def measure(folder: Path, dataset: Path, sha256: str, recalls: tuple[float, float],
            threshold: float | None = None) -> tuple[VariantCheck, dict]:
    """Score the export in `folder` on val and test. `threshold`: keep this one (the FP32 reference keeps the
    evaluated threshold); None: tune the variant's own on val by evaluation's rule, `recalls` being its
    (tuning recall, line target)."""
    detector = OnnxDetector(folder)
    rows = read_manifest(dataset)
    split = {s: [r["path"] for r in rows if r["split"] == s] for s in ("val", "test")}
    val_scores, val_truth, _ = score_split(detector, dataset, split["val"])
    test_scores, test_truth, ms = score_split(detector, dataset, split["test"])
    if threshold is None:
        threshold = operating_threshold(val_scores, val_truth, *recalls)
    val = image_level_metrics(val_scores, val_truth, threshold)
    test = image_level_metrics(test_scores, test_truth, threshold)
    check = VariantCheck(variant_of(detector.meta), sha256, float(threshold), round(val["recall"], 4),
                         round(test["recall"], 4), round(test["precision"], 4), round(ms, 2), "measured")
    return check, {"test_flagged": int((test_scores >= threshold).sum()), "test_images": len(test_scores)}


def cannot_run(key: str, sha256: str, error: BaseException) -> tuple[VariantCheck, str]:
    """A variant the endpoint's own code path could not score: refused, with the engine's message as the reason
    (recorded like any refusal, so the approver sees it beside the FP32 export)."""
    message = " ".join(str(error).split())[:300]
    check = VariantCheck(key, sha256, float("nan"), 0.0, 0.0, 0.0, float("nan"), REFUSED)
    return check, f"it fails on the endpoint's own inputs ({type(error).__name__}: {message})"


def judge(variant: VariantCheck, reference: VariantCheck, target_recall: float,
          max_precision_drop: float) -> tuple[VariantCheck, str | None]:
    """The gate: the variant with its verdict, and the reason when refused."""
    reasons = shortfalls({"recall": variant.test_recall, "precision": variant.test_precision},
                         {"recall": reference.test_recall, "precision": reference.test_precision},
                         floors={"recall": target_recall}, drops={"precision": max_precision_drop},
                         reference_name="FP32", drop_setting="deploy.max_precision_drop")
    if reasons:
        reasons[-1] += f" (at its val-tuned threshold {variant.threshold:.4g})"
    verdict = REFUSED if reasons else VERIFIED
    return replace(variant, verdict=verdict), "; ".join(reasons) or None

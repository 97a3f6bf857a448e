"""The endpoint's settings (`serve:` in params.yaml): limits on what it accepts, where decisions go."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from defectops.components.deploy.decision import SeverityRule
from defectops.config import StepConfig
from defectops.records.publish import PublishConfig


class ServeConfig(StepConfig):
    model_name: str = "defectops-detector"
    deploy_root: Path = Path("deploy")
    records_url: str | None = Field("monitoring/decisions.db", description="Decision store: a SQLite file or a "
                                    "SQLAlchemy URL (postgresql+psycopg://...). None records nothing (benchmarks).")
    records_queue: int = Field(10_000, ge=1, description="Decisions waiting for the store; beyond this they are "
                                                         "dropped and counted, never blocking the line.")
    records_retention_days: float | None = Field(90.0, gt=0, description="Older decisions are deleted; None keeps "
                                                                         "everything.")
    archive_root: Path = Field(Path("archive"), description="Content-addressed images of rejects and reviews.")
    archive_accept_share: float = Field(0.01, ge=0, le=1, description="Share of accepted images archived too.")
    publish: PublishConfig = PublishConfig()
    api_keys_env: str = Field("DEFECTOPS_API_KEYS", description="Env var holding comma-separated API keys.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line.")
    require_api_key: bool = Field(True, description="Refuse to start without keys unless false (local dev).")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024, description="Width x height above this is refused (bombs).")
    max_side: int = Field(16384, ge=64, description="Width or height above this is refused.")
    max_aspect_ratio: float = Field(64.0, ge=1, description="Longer side / shorter side above this is refused: no "
                                    "camera frame is that thin, and resizing one to the model's size leaves no pixels.")
    allowed_formats: list[str] = ["PNG", "JPEG", "BMP", "TIFF"]
    max_batch: int = Field(16, ge=1, description="Images in one request.")
    micro_batch: int = Field(1, ge=1, le=256, description="Images from concurrent requests per model call "
                             "(micro-batching). 1 = one call per image: on a 2-core CPU that measured faster "
                             "(bench/serve_precision.py); a many-core box or a GPU gains from 8-16.")
    batch_wait_ms: float = Field(0.0, ge=0, le=100, description="How long a model call waits for more images "
                                 "after its first one; 0: it takes what queued while the previous call ran (no "
                                 "added latency; measured fastest, bench/serve_precision.py).")
    inference_timeout_s: float = Field(10.0, gt=0, description="A predict request waiting longer gets 503.")
    explain_timeout_s: float = Field(120.0, gt=0, description="The same for /v1/explain: a person's question, "
                                     "not the line's; its first call loads torch and the checkpoint (seconds).")
    inference_workers: int = Field(4, ge=1, description="Threads that decode, prepare and judge images (the model "
                                                        "calls themselves are batched); health probes never wait "
                                                        "for them.")
    max_queued: int = Field(64, ge=1, description="Images waiting for an inference thread; beyond this a request "
                                                  "gets 503 at once instead of piling up.")
    review_band: tuple[float, float] = Field((0.5, 1.0), description="Scores in [thr*lo, thr*hi) go to review.")
    severity: dict[str, SeverityRule] = Field({}, description="Per defect class, area limits that grade a "
                                              "rejected part's defects into accept / review / reject, e.g. "
                                              "pit: {review_mm2: 0.2, reject_mm2: 1.0}.")
    mm_per_px: float | None = Field(None, gt=0, description="The camera's scale: areas are also reported in mm², "
                                                            "and severity rules may use mm².")
    reload_interval_s: float = Field(2.0, gt=0, description="How often the registry is checked for a new champion.")
    canary_share: float = Field(0.0, ge=0, le=0.5, description="Share of requests for a challenger cleared for "
                                                               "canary traffic ('defectops registry canary').")

    @model_validator(mode="after")
    def _mm2_rules_need_a_scale(self):
        in_mm2 = sorted(name for name, rule in self.severity.items() if rule.in_mm2)
        if in_mm2 and not self.mm_per_px:
            raise ValueError(f"serve.severity {in_mm2}: limits in mm² need serve.mm_per_px (the camera's scale)")
        return self

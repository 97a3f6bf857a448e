"""`feedback:` in params.yaml: which decided images go to inspectors, and when their answers call for retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from defectops.config import StepConfig


class FeedbackConfig(StepConfig):
    records_url: str = Field("monitoring/decisions.db", description="The endpoint's decision store "
                             "(serve.records_url): the queue is read from it and answers are written to it.")
    sample_rates: dict[Literal["reject", "accept"], float] = Field(
        {"reject": 0.1, "accept": 1.0}, description="Besides every 'review', this share of archived rejects and "
        "accepts joins the queue (accepts are archived at serve.archive_accept_share already): the model's sure "
        "answers get checked too, or its confident mistakes are never found.")
    order: Literal["newest", "uncertain"] = Field("newest", description="newest first, or the score closest to "
                                                                        "the threshold first.")
    shift_starts: list[int] = Field([6, 14, 22], min_length=1, description="Hours (server clock) at which shifts "
                                    "start: the page counts each inspector's answers since the last one.")
    max_disagreement: float = Field(0.2, gt=0, le=1, description="Inspectors overruling the champion on more than "
                                    "this share of its recent answered images starts a retraining (the drift "
                                    "path: debounced, pending approval).")
    min_answers: int = Field(20, ge=1, description="Fewer answers about the champion than this: no verdict.")
    window: int = Field(200, ge=1, description="The champion's newest answers the disagreement rate is taken over.")
    export_dir: Path = Field(Path("data/feedback"), description="'defectops feedback export' writes the answered "
                             "images here as a canonical dataset (train split only); add it to "
                             "ingest.extra_sources.")

    @field_validator("sample_rates")
    @classmethod
    def _shares(cls, value: dict) -> dict:
        for decision, share in value.items():
            if not 0 <= share <= 1:
                raise ValueError(f"sample_rates.{decision}: {share} is not a share between 0 and 1")
        return value

    @field_validator("shift_starts")
    @classmethod
    def _hours(cls, value: list[int]) -> list[int]:
        if any(not 0 <= h < 24 for h in value):
            raise ValueError(f"{value}: shift starts are hours 0-23")
        return sorted(set(value))

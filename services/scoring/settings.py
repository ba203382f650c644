"""Settings of the scoring processes (the API and the worker)."""

from __future__ import annotations

from pydantic import Field

from services.core.settings import CoreSettings


class ScoringSettings(CoreSettings):
    # attempt.submitted is scored in batches: one INSERT and one Redis pipeline per
    # batch is what keeps up with the deadline peak.
    scoring_batch_size: int = Field(default=200, ge=1, le=5000)
    scoring_batch_wait_s: float = Field(default=0.02, ge=0, le=5)

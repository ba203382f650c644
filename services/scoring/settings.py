"""Settings of the scoring processes (the API and the worker)."""

from __future__ import annotations

from pydantic import Field

from services.core.settings import CoreSettings


class ScoringSettings(CoreSettings):
    # attempt.submitted is scored in batches: one INSERT and one Redis pipeline per
    # batch is what keeps up with the deadline peak.
    scoring_batch_size: int = Field(default=200, ge=1, le=5000)
    scoring_batch_wait_s: float = Field(default=0.02, ge=0, le=5)
    # The worker's clock loop: scheduled nudges and pending board rebuilds.
    scoring_clock_interval_s: float = Field(default=30, gt=0, le=600)
    # A scheduled nudge still goes out this long after its time (the worker was down),
    # never later.
    scoring_nudge_lateness_s: int = Field(default=3600, ge=60, le=86400)
    # How often the worker looks for boards Redis lost (a flush, a restart, a failover)
    # and rebuilds them from PostgreSQL: one INFO and one small query per look.
    scoring_projection_check_s: float = Field(default=1.0, gt=0, le=60)
    # How long a board read waits for a rebuild another process is doing before it
    # answers 503 board_rebuilding (never a partial board).
    scoring_rebuild_wait_s: float = Field(default=10.0, ge=0, le=60)

"""Settings of the quiz API and of its round clock (one object per process, read at start-up)."""

from __future__ import annotations

from pydantic import Field

from services.core.settings import CoreSettings
from services.core.tables import MAX_TABLE_ROWS


class QuizSettings(CoreSettings):
    # How often the round clock opens due rounds and finalises ended ones.
    clock_interval_s: float = Field(default=1.0, gt=0)
    # A submission stamped in time by the gateway may still be on its way inside the
    # system; the submit statement accepts it until deadline + grace + this margin (by
    # the database clock), and the clock finalises a round only after that, so
    # round.closed's submitted_count can never miss a late-committing submission.
    # Longer than the gateway's upstream timeout (60 s). API and clock must agree on it.
    in_flight_margin_s: int = Field(default=120, ge=0, le=3600)
    # Upload limit of the question-bank import (the gateway also caps bodies at 10 MB).
    import_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Rows of a question-bank file; reading stops just past it.
    import_max_rows: int = Field(default=MAX_TABLE_ROWS, ge=1, le=1_000_000)

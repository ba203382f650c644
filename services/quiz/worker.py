"""The round clock: `python -m services.quiz.worker`. Consumes no events; every
`clock_interval_s` it opens the rounds that are due (bank snapshot + round.opened) and
finalises the rounds that have ended (round.closed with the number of submissions).
Several clocks may run at once: the guarded UPDATEs make each event happen once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from services.core.db import create_pool
from services.core.logs import configure_logging
from services.core.process import stop_on_signals
from services.quiz import domain, store
from services.quiz.settings import QuizSettings

log = logging.getLogger("services.quiz.worker")


class RoundClock:
    def __init__(self, pool: asyncpg.Pool, *, in_flight_margin_s: int, interval_s: float = 1.0) -> None:
        self.pool = pool
        self.in_flight_margin_s = in_flight_margin_s
        self.interval_s = interval_s

    async def tick(self) -> None:
        for round_id in await store.rounds_due_to_open(self.pool, datetime.now(UTC)):
            await store.open_round(self.pool, round_id, datetime.now(UTC))
        # Judged on the database's clock: the one the submit statement uses for its margin.
        now, closing = await store.rounds_closing(self.pool)
        for candidate in closing:
            deadlines = [candidate.last_unsubmitted_deadline] if candidate.last_unsubmitted_deadline else []
            if domain.is_round_final_ready(candidate.round, deadlines, now, self.in_flight_margin_s):
                await store.finalise_round(self.pool, candidate.round.id, self.in_flight_margin_s)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("round clock started", extra={"interval_s": self.interval_s})
        while not stop.is_set():
            try:
                await self.tick()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The database is away or a statement failed: try again next tick.
                log.warning("round clock tick failed", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
        log.info("round clock stopped")


async def main() -> None:
    settings = QuizSettings()
    configure_logging("quiz-clock", settings.log_level)
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, "quiz", min_size=1, max_size=2)
    try:
        clock = RoundClock(pool, in_flight_margin_s=settings.in_flight_margin_s, interval_s=settings.clock_interval_s)
        await clock.run(stop)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())

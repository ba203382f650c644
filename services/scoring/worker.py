"""`python -m services.scoring.worker`: the scoring consumer (DESIGN.md "The submit path").

Scores attempt.submitted in batches against the answer key round.opened brought, keeps
the copies of participants, units and rounds it needs, and finalises a round (ranking
per group, prediction truth, prizes) once round.closed has come and every attempt it
counted is scored. Every handler is idempotent; one that needs an event not yet arrived
raises, and the bus brings its events back later.

Beside the consumer a clock loop runs every `scoring_clock_interval_s`: it sends the
scheduled participation nudges whose time has come (each slot once, across restarts and
replicas) and rebuilds the boards units.changed asked for. A faster watch, every
`scoring_projection_check_s`, rebuilds the boards Redis lost (services.scoring.projection);
a batch about to be written to a round whose boards are lost rebuilds them first.

An outage of PostgreSQL or Redis does not spend an event's retries: the bus holds the
batch until both answer again (services.core.bus), and the handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis

from services.core import outages
from services.core.bus import Bus, Handler, Topology
from services.core.db import create_pool
from services.core.events import (
    ATTEMPT_SCORED,
    ATTEMPT_SUBMITTED,
    PARTICIPANT_REGISTERED,
    ROUND_CLOSED,
    ROUND_OPENED,
    UNITS_CHANGED,
    Event,
)
from services.core.logs import configure_logging
from services.core.process import stop_on_signals
from services.scoring import domain, nudges, store
from services.scoring.leaderboards import Leaderboards, board_writes, rebuild_rounds
from services.scoring.projection import Projection
from services.scoring.settings import ScoringSettings

log = logging.getLogger("services.scoring.worker")

# attempt.scored ids derive from the attempt, so even a re-emission carries the same id.
_SCORED_NAMESPACE = uuid.UUID("5d1c8d0e-3f54-4c0e-9a53-7f1b3a2b6c11")


class RoundNotOpened(Exception):
    """An attempt of a round whose round.opened has not arrived yet: retry later."""


class UnknownRound(Exception):
    """round.closed for a round whose round.opened has not arrived yet: retry later."""


# --- event payloads (docs/events.md), validated at the edge ----------------------------

class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PrizeIn(_Payload):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


class PredictionIn(_Payload):
    text: str = ""
    target: domain.PredictionTarget


class GroupIn(_Payload):
    code: str = Field(min_length=1)
    name: str = ""


class RoundOpened(_Payload):
    round_id: UUID
    contest_id: UUID
    contest_slug: str = ""
    contest_title: str
    round_number: int | None = None
    round_title: str
    opens_at: datetime
    closes_at: datetime
    question_count: int | None = None
    time_limit_s: int | None = None
    grace_s: int | None = None
    max_attempts: int | None = None
    tie_break: list[domain.Criterion] = Field(default_factory=lambda: list(domain.DEFAULT_TIE_BREAK))
    prize_scope: domain.PrizeScope = "round"
    prizes: list[PrizeIn] = Field(default_factory=list)
    prediction: PredictionIn | None = None
    answer_key: dict[str, list[str]]
    # Since issue 3; optional so that a round.opened from before still parses.
    groups: list[GroupIn] = Field(default_factory=list)
    group_prizes: dict[str, list[PrizeIn]] | None = None
    require_all_answered: bool = False
    freeze_s: int = Field(default=0, ge=0)

    @field_validator("answer_key", mode="before")
    @classmethod
    def _key_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): [str(o) for o in v] if isinstance(v, list) else v for k, v in value.items()}
        return value

    def stored(self) -> store.OpenedRound:
        domain.parse_tie_break(self.tie_break)  # a criterion named twice is refused here, not at the end
        rules = self.model_dump(
            mode="json",
            include={"contest_slug", "round_number", "question_count", "time_limit_s", "grace_s", "max_attempts",
                     "tie_break", "prize_scope", "prizes", "prediction", "groups", "group_prizes",
                     "require_all_answered", "freeze_s"},
        )
        domain.RoundRules.from_mapping(rules)  # a group named twice is refused here, not at the end
        return store.OpenedRound(
            self.round_id, self.contest_id, self.contest_title, self.round_title, self.opens_at, self.closes_at,
            rules, self.answer_key,
        )


class ParticipantRegistered(_Payload):
    participant_id: UUID
    full_name: str
    unit_id: UUID | None = None
    group: str | None = None


class UnitIn(_Payload):
    id: UUID
    code: str
    name: str
    parent_id: UUID | None = None
    block: str = ""
    headcount: int = 0


class UnitsChanged(_Payload):
    units: list[UnitIn]


class AttemptSubmitted(_Payload):
    attempt_id: UUID
    round_id: UUID
    participant_id: UUID
    name: str = ""
    unit_id: UUID | None = None
    group: str | None = None
    attempt_number: int = Field(ge=1)
    started_at: datetime
    submitted_at: datetime
    # At most what a live score can hold (real attempts have 5-35 questions).
    question_ids: list[str] = Field(max_length=domain.MAX_CORRECT)
    answers: dict[str, list[str]] = Field(default_factory=dict)
    prediction: int | None = None
    # Since issue 3 quiz may say it; computed from answers and question_ids when absent.
    answered_all: bool | None = None

    @field_validator("question_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # Question ids may be numbers in JSON lists but are always text as object keys.
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("answers", mode="before")
    @classmethod
    def _answers_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): [str(o) for o in v] if isinstance(v, list) else v for k, v in value.items()}
        return value or {}


class RoundClosed(_Payload):
    round_id: UUID
    closed_at: datetime
    submitted_count: int = Field(ge=0)


def _scored_event(round_id: UUID, result: domain.Result, correlation_id: str) -> Event:
    return Event(
        ATTEMPT_SCORED,
        {
            "attempt_id": result.attempt_id,
            "round_id": round_id,
            "participant_id": result.participant_id,
            "correct": result.correct,
            "total": result.total,
            "duration_ms": result.duration_ms,
        },
        id=uuid.uuid5(_SCORED_NAMESPACE, str(result.attempt_id)),
        correlation_id=correlation_id,
    )


# --- the handlers ----------------------------------------------------------------------

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ScoringConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        boards: Leaderboards,
        *,
        clock: Clock = _utc_now,
        nudge_lateness: timedelta = timedelta(hours=1),
    ) -> None:
        self.pool = pool
        self.boards = boards
        self.clock = clock
        self.nudge_lateness = nudge_lateness
        self.projection = Projection(pool, boards, clock=clock)
        # Answer keys never change once a round is open; keep them for the process's life.
        self._keys: dict[UUID, store.AnswerKey] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            ROUND_OPENED: self.on_round_opened,
            PARTICIPANT_REGISTERED: self.on_participants_registered,
            UNITS_CHANGED: self.on_units_changed,
            ATTEMPT_SUBMITTED: self.on_attempts_submitted,
            ROUND_CLOSED: self.on_rounds_closed,
        }

    async def on_round_opened(self, events: list[Event]) -> None:
        for event in events:
            payload = RoundOpened.model_validate(event.data)
            opened = payload.stored()
            await store.upsert_round(self.pool, opened)
            key = store.AnswerKey.of(opened.round_id, opened.opens_at, opened.closes_at, opened.rules,
                                     opened.answer_key)
            self._keys[opened.round_id] = key
            await self.boards.set_round(opened.round_id, key.freeze_at, [g.code for g in payload.groups])
            # A new round's (empty) boards get their marker here, so that reading them
            # never looks like a loss.
            await self.projection.ensure_built([opened.round_id])

    async def on_participants_registered(self, events: list[Event]) -> None:
        people = [ParticipantRegistered.model_validate(e.data) for e in events]
        copies = [store.ParticipantCopy(p.participant_id, p.full_name, p.unit_id, p.group) for p in people]
        await store.upsert_participants(self.pool, copies, overwrite=True)
        await self.boards.record(
            [],
            names={p.participant_id: p.full_name for p in people},
            units_of={p.participant_id: p.unit_id for p in people if p.unit_id is not None},
        )

    async def on_units_changed(self, events: list[Event]) -> None:
        # Snapshots: only the newest of the batch matters (the store also ignores one
        # older than what it holds).
        newest = max(events, key=lambda e: e.occurred_at)
        snapshot = UnitsChanged.model_validate(newest.data)
        units = [store.UnitCopy(u.id, u.code, u.name, u.parent_id, u.block, u.headcount) for u in snapshot.units]
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await store.replace_units(conn, units, newest.occurred_at)
        if applied:
            await self.boards.replace_unit_names({u.id: u.name for u in units})
        # Also when this snapshot was not applied: a redelivery after a failed rebuild
        # must still do the rebuild its first delivery queued.
        await self.rebuild_pending()

    async def rebuild_pending(self) -> int:
        """Rebuild the boards of rounds whose entrants' units moved; the number rebuilt."""
        pending = await store.pending_rebuilds(self.pool)
        for round_id, requested_at in pending:
            await rebuild_rounds(self.pool, self.boards, [round_id], now=self.clock())
            await store.rebuild_done(self.pool, round_id, requested_at)
        return len(pending)

    async def on_attempts_submitted(self, events: list[Event]) -> None:
        submitted = [(AttemptSubmitted.model_validate(e.data), e.correlation_id) for e in events]
        keys = await self._answer_keys({s.round_id for s, _ in submitted})
        scored: list[tuple[UUID, domain.Result]] = []
        correlation: dict[UUID, str] = {}
        for s, cid in submitted:
            key = keys[s.round_id]
            correct, total = domain.score(s.answers, s.question_ids, key.answers)
            answered_all = s.answered_all if s.answered_all is not None else domain.answered_all(
                s.answers, s.question_ids
            )
            result = domain.Result(
                attempt_id=s.attempt_id,
                participant_id=s.participant_id,
                attempt_number=s.attempt_number,
                correct=correct,
                total=total,
                duration_ms=domain.duration_ms(s.started_at, s.submitted_at),
                started_at=s.started_at,
                submitted_at=s.submitted_at,
                prediction=s.prediction,
                unit_id=s.unit_id,
                group=s.group,
                counts=domain.entry_counts(key.require_all_answered, answered_all),
            )
            scored.append((s.round_id, result))
            correlation[s.attempt_id] = cid

        # Names for winners lists even if participant.registered is late; registration's
        # own event overwrites them when it comes.
        await store.upsert_participants(
            self.pool,
            [store.ParticipantCopy(s.participant_id, s.name, s.unit_id, s.group) for s, _ in submitted],
            overwrite=False,
        )
        async with self.pool.acquire() as conn:
            await store.insert_results_with_outbox(
                conn, scored, lambda rid, r: _scored_event(rid, r, correlation[r.attempt_id])
            )
            parent_of = await store.unit_parents(conn, list({r.unit_id for _, r in scored if r.unit_id}))

        # Every result of the batch, not only the new ones: if Redis failed after the
        # commit last time, this retry is what puts them on the board.
        now = self.clock()
        by_round: dict[UUID, list[domain.Result]] = defaultdict(list)
        for rid, r in scored:
            by_round[rid].append(r)
        # Boards Redis lost are rebuilt before this batch lands on them (the rebuild
        # reads PostgreSQL after our commit, so this batch is in it).
        await self.projection.ensure_built(list(by_round))
        writes = {
            rid: board_writes(rid, keys[rid].opens_at, keys[rid].freeze_at, results, parent_of, now)
            for rid, results in by_round.items()
        }
        await self.boards.record(
            [p for w in writes.values() for p in w.placements],
            names={s.participant_id: s.name for s, _ in submitted if s.name},
            units_of={s.participant_id: s.unit_id for s, _ in submitted if s.unit_id is not None},
            overwrite=False,
            freeze_first=[rid for rid, w in writes.items() if w.freeze_first],
        )
        await self.finalise_ready(list(keys))

    async def on_rounds_closed(self, events: list[Event]) -> None:
        for event in events:
            closed = RoundClosed.model_validate(event.data)
            if not await store.close_round(self.pool, closed.round_id, closed.closed_at, closed.submitted_count):
                raise UnknownRound(f"round {closed.round_id} closed before scoring saw it open")
            if not await self.finalise_if_complete(closed.round_id) and await store.is_final(
                self.pool, closed.round_id
            ):
                # Final already: make sure the boards know (a redelivery after Redis failed).
                await self.boards.mark_final(closed.round_id)

    async def _answer_keys(self, round_ids: set[UUID]) -> dict[UUID, store.AnswerKey]:
        missing = [rid for rid in round_ids if rid not in self._keys]
        if missing:
            self._keys.update(await store.answer_keys(self.pool, missing))
        unknown = [rid for rid in round_ids if rid not in self._keys]
        if unknown:
            raise RoundNotOpened(f"no answer key yet for round(s) {', '.join(map(str, unknown))}")
        return {rid: self._keys[rid] for rid in round_ids}

    # --- finalisation ---------------------------------------------------------------

    async def finalise_ready(self, round_ids: Sequence[UUID]) -> None:
        for round_id in await store.closed_unfinalised(self.pool, round_ids):
            await self.finalise_if_complete(round_id)

    async def finalise_if_complete(self, round_id: UUID) -> bool:
        """Rank the round and fix its winners once it is closed and every attempt quiz
        counted is scored; True when this call did it. Idempotent: a final round is
        never ranked again."""
        async with self.pool.acquire() as conn, conn.transaction():
            pending = await store.lock_round_to_finalise(conn, round_id)
            if pending is None or not pending.complete:
                return False
            rules = domain.RoundRules.from_mapping(pending.rules)
            # Counting entries only; the truth is the whole round's (the question asks
            # about the round), whatever the groups.
            best = await store.best_attempts(conn, round_id)
            truth = domain.prediction_truth(rules.prediction_target, best)
            standings = domain.final_standings(best, rules, truth)
            ineligible = (
                await store.contest_winners(conn, pending.contest_id, except_round=round_id)
                if rules.prize_scope == "contest"
                else set()
            )
            winners = domain.award_prizes(standings, rules, ineligible)
            await store.save_final(conn, round_id, truth, winners)
        await self.boards.mark_final(round_id)
        log.info(
            "round finalised",
            extra={"round_id": str(round_id), "entrants": len(best), "winners": len(winners), "truth": truth},
        )
        return True

    # --- the clock loop -------------------------------------------------------------

    async def tick(self) -> None:
        """One pass of the clock loop: due nudges, then pending board rebuilds."""
        await nudges.send_scheduled(self.pool, self.clock(), self.nudge_lateness)
        await self.rebuild_pending()

    async def keep_time(self, stop: asyncio.Event, interval_s: float) -> None:
        await _every(interval_s, self.tick, stop, "clock pass failed")

    async def keep_watch(self, stop: asyncio.Event, interval_s: float) -> None:
        """Rebuild what Redis lost, by itself: one look every `interval_s`."""
        await _every(interval_s, self.projection.heal, stop, "projection watch failed")


async def _every(interval_s: float, work: Callable[[], Awaitable[object]], stop: asyncio.Event, failed: str) -> None:
    away = False  # a server is away: said once, not on every pass of the outage
    while not stop.is_set():
        try:
            await work()
            away = False
        except Exception as exc:  # the next pass tries again (a nudge slot is only taken with its nudge)
            if not outages.is_dependency_outage(exc):
                log.exception(failed)
            elif not away:
                away = True
                log.warning(failed, extra={"error": repr(exc)})
        if await outages.sleep_unless_stopped(interval_s, stop):
            return


# --- composition root ------------------------------------------------------------------

async def main() -> None:
    settings = ScoringSettings()
    configure_logging("scoring-worker", settings.log_level)
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, "scoring", min_size=1, max_size=settings.db_pool_max)
    redis = Redis.from_url(settings.redis_url)
    bus = Bus(
        settings.amqp_url,
        Topology(settings.bus_prefix, "scoring", tuple(settings.bus_retry_delays_s)),
        prefetch=max(settings.bus_prefetch, settings.scoring_batch_size),
    )
    await bus.connect()
    log.info("scoring worker started", extra={"batch_size": settings.scoring_batch_size})
    consumer = ScoringConsumer(
        pool, Leaderboards(redis), nudge_lateness=timedelta(seconds=settings.scoring_nudge_lateness_s)
    )
    clock = asyncio.create_task(consumer.keep_time(stop, settings.scoring_clock_interval_s))
    watch = asyncio.create_task(consumer.keep_watch(stop, settings.scoring_projection_check_s))
    try:
        await bus.consume(
            consumer.handlers(),
            batch_size=settings.scoring_batch_size,
            batch_wait_s=settings.scoring_batch_wait_s,
            stop=stop,
            dependencies=[outages.postgres(pool), outages.redis(redis)],
        )
    finally:
        stop.set()
        await clock
        await watch
        await bus.close()
        await redis.aclose()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())

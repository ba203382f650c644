"""Participation nudges (`participation.nudge`, docs/events.md): the leaf units below a
target participation rate, sent on the organiser's request or at scheduled local times.

Each nudge is a row and an outbox event written in one transaction; the nudge id is the
event id, so notify drops a redelivered copy. A scheduled slot (contest, local day,
HH:MM) is claimed in the same transaction as its nudge, so it sends at most once across
restarts and worker replicas.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg

from services.core.events import PARTICIPATION_NUDGE, Event
from services.scoring import domain, store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NudgeSent:
    nudge_id: UUID
    units: int


def nudge_event(
    nudge_id: UUID,
    rounds: list[store.RoundInfo],
    chosen: store.RoundInfo | None,
    target_rate: float,
    below: list[domain.UnitParticipation],
) -> Event:
    contest = rounds[-1]
    return Event(
        PARTICIPATION_NUDGE,
        {
            "nudge_id": str(nudge_id),
            "contest_id": str(contest.contest_id),
            "contest_title": contest.contest_title,
            "round_id": None if chosen is None else str(chosen.round_id),
            "round_title": None if chosen is None else chosen.round_title,
            "target_rate": target_rate,
            "units": [
                {"unit_id": str(u.unit_id), "code": u.code, "name": u.name, "participants": u.participants,
                 "headcount": u.headcount, "rate": u.rate}
                for u in below
            ],
        },
        id=nudge_id,
    )


async def _write(
    conn: asyncpg.Connection,
    rounds: list[store.RoundInfo],
    chosen: store.RoundInfo | None,
    target_rate: float,
    origin: Literal["organiser", "schedule"],
    idempotency_key: str | None,
) -> NudgeSent:
    scope = [chosen.round_id] if chosen is not None else [r.round_id for r in rounds]
    below = domain.units_below_target(await store.unit_participation(conn, scope), target_rate)
    nudge_id = uuid.uuid4()
    # Nobody to write to: the nudge is recorded, no event goes out.
    event = nudge_event(nudge_id, rounds, chosen, target_rate, below) if below else None
    record = await store.insert_nudge_with_outbox(
        conn,
        nudge_id=nudge_id,
        contest_id=rounds[-1].contest_id,
        round_id=None if chosen is None else chosen.round_id,
        target_rate=target_rate,
        units=len(below),
        origin=origin,
        idempotency_key=idempotency_key,
        event=event,
    )
    return NudgeSent(record.nudge_id, record.units)


async def send_now(
    pool: asyncpg.Pool,
    rounds: list[store.RoundInfo],
    chosen: store.RoundInfo | None,
    target_rate: float,
    idempotency_key: str | None = None,
) -> NudgeSent:
    """The organiser's nudge: units below the target in `chosen` round, or in the whole
    contest so far when None. The same Idempotency-Key answers the first nudge again."""
    if idempotency_key is not None:
        earlier = await store.nudge_by_key(pool, rounds[-1].contest_id, idempotency_key)
        if earlier is not None:
            return NudgeSent(earlier.nudge_id, earlier.units)
    async with pool.acquire() as conn, conn.transaction():
        return await _write(conn, rounds, chosen, target_rate, "organiser", idempotency_key)


def scheduled_round(
    rounds: list[store.RoundInfo], round_id: UUID | None, now: datetime
) -> store.RoundInfo | None:
    """The round a scheduled nudge is about: the schedule's round, or else the contest's
    round open now; None (no nudge) when that round is not open: nobody can take part."""
    candidates = [r for r in rounds if round_id is None or r.round_id == round_id]
    open_now = [r for r in candidates if r.open_at(now)]
    return open_now[-1] if open_now else None


async def send_scheduled(pool: asyncpg.Pool, now: datetime, lateness: timedelta) -> int:
    """Send every scheduled nudge whose slot is due and not yet decided; the number sent."""
    sent = 0
    for schedule in await store.enabled_nudge_schedules(pool):
        for day, time_local in domain.due_slots(now, schedule.times_local, lateness):
            async with pool.acquire() as conn, conn.transaction():
                if not await store.claim_nudge_slot(conn, schedule.contest_id, day, time_local):
                    continue
                rounds = await store.contest_rounds(conn, schedule.contest_id)
                chosen = scheduled_round(rounds, schedule.round_id, now)
                if chosen is None:
                    log.info("scheduled nudge skipped: no open round",
                             extra={"contest_id": str(schedule.contest_id), "slot": f"{day} {time_local}"})
                    continue
                nudge = await _write(conn, rounds, chosen, schedule.target_rate, "schedule", None)
                await store.set_slot_nudge(conn, schedule.contest_id, day, time_local, nudge.nudge_id)
                sent += 1
                log.info("scheduled nudge sent", extra={"contest_id": str(schedule.contest_id),
                                                         "slot": f"{day} {time_local}", "units": nudge.units})
    return sent

"""The round clock against the real PostgreSQL, called tick by tick and run as its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from services.core.testing import TEST_DATABASE_URL
from services.quiz import store
from services.quiz.tests.conftest import add_attempt, make_round, outbox_events
from services.quiz.worker import RoundClock

ROOT = Path(__file__).resolve().parents[3]


async def test_tick_opens_due_rounds_once(pool: asyncpg.Pool) -> None:
    due = await make_round(pool, slug="due")
    now = datetime.now(UTC)
    later = await make_round(pool, slug="later", opens_at=now + timedelta(days=1), closes_at=now + timedelta(days=2))
    clock = RoundClock(pool, in_flight_margin_s=0)
    await asyncio.gather(clock.tick(), clock.tick(), RoundClock(pool, in_flight_margin_s=0).tick())
    await clock.tick()
    events = await outbox_events(pool, "round.opened")
    assert [e["data"]["round_id"] for e in events] == [str(due)]
    later_round = await store.round_by_id(pool, later)
    assert later_round is not None and later_round.opened_at is None


async def test_tick_finalises_once_every_attempt_has_ended(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    round_id = await make_round(pool, grace_s=30)
    clock = RoundClock(pool, in_flight_margin_s=0)
    await clock.tick()
    questions = store.RoundQuestions()
    submitted = await add_attempt(pool, round_id)
    assert await store.submit_with_outbox(
        pool, questions, attempt_id=submitted.id, participant_id=submitted.participant_id, arrived_at=now,
        answers={}, prediction=None, in_flight_margin_s=0)
    await add_attempt(pool, round_id, started_at=now - timedelta(hours=2))  # abandoned long ago
    running = await add_attempt(pool, round_id, started_at=now - timedelta(seconds=590), time_limit_s=600)

    await clock.tick()
    assert await outbox_events(pool, "round.closed") == [], "the round is still open"
    await store.close_round(pool, round_id)
    await clock.tick()
    assert await outbox_events(pool, "round.closed") == [], "an attempt can still be submitted"

    # Its deadline + grace passes without a submit: the round ends with one submission.
    await pool.execute("UPDATE attempts SET deadline_at = now() - interval '31 seconds' WHERE id = $1", running.id)
    await asyncio.gather(clock.tick(), RoundClock(pool, in_flight_margin_s=0).tick())
    await clock.tick()
    [event] = await outbox_events(pool, "round.closed")
    assert event["data"] == {
        "round_id": str(round_id),
        "closed_at": event["data"]["closed_at"],
        "submitted_count": 1,
    }
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None and round_.finalised_at is not None
    assert datetime.fromisoformat(event["data"]["closed_at"]) == round_.closed_at


async def test_the_in_flight_margin_delays_finalising(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await RoundClock(pool, in_flight_margin_s=0).tick()
    await store.close_round(pool, round_id)
    await RoundClock(pool, in_flight_margin_s=60).tick()
    assert await outbox_events(pool, "round.closed") == []
    await pool.execute("UPDATE rounds SET closed_at = closed_at - interval '61 seconds'")
    await RoundClock(pool, in_flight_margin_s=60).tick()
    assert len(await outbox_events(pool, "round.closed")) == 1


async def test_a_round_closed_before_it_opened_is_opened_and_finalised(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    round_id = await make_round(pool, opens_at=now + timedelta(days=1), closes_at=now + timedelta(days=2))
    await store.close_round(pool, round_id)
    clock = RoundClock(pool, in_flight_margin_s=0)
    await clock.tick()
    await clock.tick()
    assert len(await outbox_events(pool, "round.opened")) == 1
    [closed] = await outbox_events(pool, "round.closed")
    assert closed["data"]["submitted_count"] == 0


async def test_run_stops_when_asked(pool: asyncpg.Pool) -> None:
    stop = asyncio.Event()
    round_id = await make_round(pool)
    running = asyncio.create_task(RoundClock(pool, in_flight_margin_s=0, interval_s=0.05).run(stop))
    for _ in range(100):
        if await outbox_events(pool, "round.opened"):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 2)
    assert (await store.round_by_id(pool, round_id)).opened_at is not None  # type: ignore[union-attr]


async def test_the_clock_process_opens_rounds_and_stops_on_sigterm(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    env = {**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "CLOCK_INTERVAL_S": "0.1", "APP_ENV": "test",
           "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.quiz.worker", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(100):
            round_ = await store.round_by_id(pool, round_id)
            if round_ is not None and round_.opened_at is not None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the clock process did not open the round")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()
    assert b"round clock stopped" in stderr

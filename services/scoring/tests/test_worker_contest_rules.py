"""Issue 3 in the consumer, against the real PostgreSQL and Redis: entries that do not
count, prizes per group across a contest, the freeze, boards after units move, and the
clock loop's scheduled nudges."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from redis.asyncio import Redis

from services.core.bus import Bus
from services.core.events import PARTICIPATION_NUDGE
from services.scoring import domain
from services.scoring.leaderboards import Leaderboards, board_key, frozen_key, rebuild_rounds, round_meta_key
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

CLOSES_AT = ev.OPENS_AT + timedelta(days=7)


async def _members(redis: Redis, key: str) -> list[str]:
    members: list[bytes] = await redis.zrevrange(key, 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


async def _winners(pool: asyncpg.Pool, round_id: uuid.UUID) -> list[tuple]:
    rows = await pool.fetch(
        'SELECT "group", rank, participant_id, prize FROM winners WHERE round_id = $1 ORDER BY "group", rank',
        round_id,
    )
    return [tuple(r) for r in rows]


# --- entries that do not count ---------------------------------------------------------

async def test_an_entry_with_a_blank_answer_is_kept_but_never_ranked(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id, complete, blank, said_so = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id, require_all_answered=True)])
    with_blank = ev.answers_with(10)
    with_blank["q3"] = []
    await consumer.on_attempts_submitted(
        [
            ev.attempt_submitted(round_id, complete, correct=5, prediction=1),
            # Better, but one question left blank; quiz did not say (computed here).
            ev.attempt_submitted(round_id, blank, correct=9, answers=with_blank, prediction=1),
            # quiz says so itself.
            ev.attempt_submitted(round_id, said_so, correct=10, answered_all=False, prediction=1),
        ]
    )
    rows = await pool.fetch("SELECT participant_id, correct, counts FROM results ORDER BY correct")
    assert [(r["participant_id"], r["correct"], r["counts"]) for r in rows] == [
        (complete, 5, True), (blank, 9, False), (said_so, 10, False)
    ]
    assert await _members(redis, board_key(round_id)) == [str(complete)]

    # The blank one tries again and answers everything: that attempt counts.
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, blank, correct=4, attempt_number=2,
                                                               prediction=2)])
    assert await _members(redis, board_key(round_id)) == [str(complete), str(blank)]

    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=4)])
    # The truth counts entrants with a counting entry: 2 (not 3).
    assert await pool.fetchval("SELECT truth FROM rounds WHERE round_id = $1", round_id) == 2
    assert await _winners(pool, round_id) == [(None, 1, complete, "Giải Nhất"), (None, 2, blank, "Giải Nhì")]


async def test_without_the_rule_a_blank_answer_counts(consumer: ScoringConsumer, pool: asyncpg.Pool) -> None:
    round_id, who = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])  # a round.opened from before issue 3
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, who, correct=3, answers={"q1": ["B"]})])
    assert await pool.fetchval("SELECT counts FROM results WHERE participant_id = $1", who) is True
    rules = await pool.fetchval("SELECT rules FROM rounds WHERE round_id = $1", round_id)
    assert (rules["groups"], rules["group_prizes"], rules["require_all_answered"], rules["freeze_s"]) == (
        [], None, False, 0
    )


# --- prizes per group, one per person per contest --------------------------------------

async def test_groups_have_their_own_rankings_and_prizes_across_a_contest(
    consumer: ScoringConsumer, pool: asyncpg.Pool
) -> None:
    contest = uuid.uuid4()
    week1, week2 = uuid.uuid4(), uuid.uuid4()
    p1, p2, p3, p4, p5 = (uuid.uuid4() for _ in range(5))
    rules = {
        "groups": [{"code": "cbcc", "name": "Cán bộ, công chức"}, {"code": "dan", "name": "Nhân dân"}],
        "prizes": [{"name": "Giải Nhất", "count": 1}],
        "group_prizes": {"dan": [{"name": "Giải Nhất", "count": 1}, {"name": "Khuyến khích", "count": 1}]},
        "prize_scope": "contest",
        "tie_break": ["correct", "duration"],
    }
    people = [(p1, "cbcc", 10), (p2, "cbcc", 9), (p3, "dan", 10), (p4, "dan", 8)]
    for week, extra in ((week1, []), (week2, [(p5, "dan", 2)])):
        await consumer.on_round_opened([ev.round_opened(week, contest, **rules)])
        entrants = people + extra
        await consumer.on_attempts_submitted(
            [ev.attempt_submitted(week, p, correct=c, group=g) for p, g, c in entrants]
        )
        await consumer.on_rounds_closed([ev.round_closed(week, submitted_count=len(entrants))])

    assert await _winners(pool, week1) == [
        ("cbcc", 1, p1, "Giải Nhất"), ("dan", 1, p3, "Giải Nhất"), ("dan", 2, p4, "Khuyến khích")
    ]
    # Week 2: earlier winners may not win again; each prize passes down its group's ranking.
    assert await _winners(pool, week2) == [("cbcc", 2, p2, "Giải Nhất"), ("dan", 3, p5, "Giải Nhất")]


# --- the freeze ------------------------------------------------------------------------

class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_the_frozen_board_is_the_board_at_the_freeze_whatever_the_scoring_lag(
    pool: asyncpg.Pool, boards: Leaderboards, redis: Redis
) -> None:
    clock = Clock(ev.OPENS_AT)
    consumer = ScoringConsumer(pool, boards, clock=clock)
    round_id, city, ward = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    early, late_scored, after, improver = (uuid.uuid4() for _ in range(4))
    freeze = CLOSES_AT - timedelta(hours=1)
    await consumer.on_units_changed([ev.units_changed([(city, "Thành phố", None), (ward, "Phường 1", city)])])
    await consumer.on_round_opened([ev.round_opened(round_id, freeze_s=3600)])
    assert await redis.hget(round_meta_key(round_id), "freeze_at") == str(int(freeze.timestamp() * 1000)).encode()

    clock.now = freeze - timedelta(hours=2)
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, early, correct=6, submitted_at=freeze - timedelta(hours=2), unit_id=ward),
         ev.attempt_submitted(round_id, improver, correct=5, submitted_at=freeze - timedelta(hours=2))]
    )
    assert not await redis.exists(frozen_key(round_id))  # far from the freeze: live boards only

    clock.now = freeze + timedelta(seconds=10)
    await consumer.on_attempts_submitted(
        [
            # Submitted after the freeze: the copy is taken before it lands.
            ev.attempt_submitted(round_id, after, correct=10, submitted_at=freeze + timedelta(seconds=5),
                                 unit_id=ward),
            # Submitted before the freeze, scored after the copy: it belongs on the frozen board.
            ev.attempt_submitted(round_id, late_scored, correct=8, submitted_at=freeze - timedelta(seconds=1),
                                 unit_id=ward),
            ev.attempt_submitted(round_id, improver, correct=9, attempt_number=2,
                                 submitted_at=freeze + timedelta(seconds=6)),
        ]
    )
    assert await _members(redis, board_key(round_id)) == [str(after), str(improver), str(late_scored), str(early)]
    frozen_overall = [str(late_scored), str(early), str(improver)]
    assert await _members(redis, frozen_key(round_id)) == frozen_overall
    assert await _members(redis, frozen_key(round_id, unit_id=city)) == [str(late_scored), str(early)]

    board = await boards.top(round_id, 10, now=freeze + timedelta(seconds=20))
    assert board.frozen_at == freeze
    assert [r.participant_id for r in board.rows] == frozen_overall
    assert [r.correct for r in board.rows] == [8, 6, 5]  # the improver as they stood then
    assert (await boards.top(round_id, 10, now=freeze + timedelta(seconds=20), live=True)).frozen_at is None
    assert (await boards.top(round_id, 10, now=freeze - timedelta(seconds=1))).frozen_at is None
    unit_board = await boards.top(round_id, 10, unit_id=ward, now=freeze + timedelta(seconds=20))
    assert [r.participant_id for r in unit_board.rows] == [str(late_scored), str(early)]
    # A participant's own standing stays live.
    standing = await boards.standing(round_id, improver)
    assert standing is not None and (standing.rank, standing.correct) == (2, 9)

    # Redis lost everything: the rebuild restores the frozen board exactly from PostgreSQL.
    await redis.flushdb()
    await rebuild_rounds(pool, boards, [round_id], now=freeze + timedelta(minutes=1))
    assert await _members(redis, frozen_key(round_id)) == frozen_overall
    assert await _members(redis, frozen_key(round_id, unit_id=city)) == [str(late_scored), str(early)]
    again = await boards.top(round_id, 10, now=freeze + timedelta(minutes=2))
    assert [r.participant_id for r in again.rows] == frozen_overall  # not copied again from live

    # Final: everyone sees the live board, the frozen copies go.
    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=5)])
    final = await boards.top(round_id, 10, now=CLOSES_AT + timedelta(hours=1))
    assert final.frozen_at is None and len(final.rows) == 4
    assert not await redis.exists(frozen_key(round_id), frozen_key(round_id, unit_id=city))


async def test_the_first_board_read_after_the_freeze_takes_the_copy(
    pool: asyncpg.Pool, boards: Leaderboards, redis: Redis
) -> None:
    clock = Clock(ev.OPENS_AT)
    consumer = ScoringConsumer(pool, boards, clock=clock)
    round_id, before, after = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    freeze = CLOSES_AT - timedelta(minutes=30)
    await consumer.on_round_opened([ev.round_opened(round_id, freeze_s=1800)])
    clock.now = freeze - timedelta(hours=1)
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, before, correct=3, group="dan",
                                                               submitted_at=clock.now)])
    board = await boards.top(round_id, 5, group="dan", now=freeze)
    assert board.frozen_at == freeze and [r.participant_id for r in board.rows] == [str(before)]
    assert await redis.hget(round_meta_key(round_id), "copied") == b"1"

    clock.now = freeze + timedelta(minutes=1)
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, after, correct=9, group="dan",
                                                               submitted_at=clock.now)])
    for group in (None, "dan"):
        frozen = await boards.top(round_id, 5, group=group, now=clock.now)
        assert [r.participant_id for r in frozen.rows] == [str(before)]
        live = await boards.top(round_id, 5, group=group, now=clock.now, live=True)
        assert [r.participant_id for r in live.rows] == [str(after), str(before)]


# --- boards follow the unit tree -------------------------------------------------------

async def test_moving_a_ward_to_another_district_rebuilds_the_boards(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    city, d1, d2, ward = (uuid.uuid4() for _ in range(4))
    round_id, finished, who = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    tree = [(city, "Thành phố", None), (d1, "Quận 1", city), (d2, "Quận 2", city), (ward, "Phường Bến Nghé", d1)]
    await consumer.on_units_changed([ev.units_changed(tree)])
    for rid in (round_id, finished):
        await consumer.on_round_opened([ev.round_opened(rid)])
        await consumer.on_attempts_submitted([ev.attempt_submitted(rid, who, correct=7, unit_id=ward)])
    for unit in (ward, d1, city):
        assert await _members(redis, board_key(round_id, unit_id=unit)) == [str(who)]

    moved = [(city, "Thành phố", None), (d1, "Quận 1", city), (d2, "Quận 2", city), (ward, "Phường Bến Nghé", d2)]
    await consumer.on_units_changed([ev.units_changed(moved)])
    for rid in (round_id, finished):
        assert not await redis.exists(board_key(rid, unit_id=d1))
        for unit in (ward, d2, city):
            assert await _members(redis, board_key(rid, unit_id=unit)) == [str(who)]
    assert await pool.fetchval("SELECT count(*) FROM pending_rebuilds") == 0

    # A rebuild that did not happen (Redis away) is done by the clock loop's next pass.
    await pool.execute("INSERT INTO pending_rebuilds (round_id) VALUES ($1)", round_id)
    await redis.delete(board_key(round_id, unit_id=d2))
    await consumer.tick()
    assert await _members(redis, board_key(round_id, unit_id=d2)) == [str(who)]
    assert await pool.fetchval("SELECT count(*) FROM pending_rebuilds") == 0


# --- scheduled nudges ------------------------------------------------------------------

async def _nudges(pool: asyncpg.Pool) -> list[dict]:
    rows = await pool.fetch("SELECT body FROM outbox WHERE type = $1 ORDER BY id", PARTICIPATION_NUDGE)
    return [orjson.loads(r["body"]) for r in rows]


async def _contest_with_units(consumer: ScoringConsumer, contest: uuid.UUID, round_id: uuid.UUID) -> dict:
    city, full, half, empty, nobody = (uuid.uuid4() for _ in range(5))
    units = [
        {"id": city, "code": "TP", "name": "Thành phố", "parent_id": None, "block": "", "headcount": 5},
        {"id": full, "code": "P01", "name": "Phường Một", "parent_id": city, "block": "Xã, phường", "headcount": 2},
        {"id": half, "code": "P02", "name": "Phường Hai", "parent_id": city, "block": "Xã, phường", "headcount": 4},
        {"id": empty, "code": "P03", "name": "Phường Ba", "parent_id": city, "block": "Xã, phường", "headcount": 3},
        {"id": nobody, "code": "P04", "name": "Phường Bốn", "parent_id": city, "block": "Xã, phường", "headcount": 0},
    ]
    await consumer.on_units_changed([ev.units_changed(units)])
    now = datetime.now(UTC)
    opens, closes = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=1)).isoformat()
    await consumer.on_round_opened([ev.round_opened(round_id, contest, opens_at=opens, closes_at=closes)])
    entrants = [(uuid.uuid4(), full), (uuid.uuid4(), full), (uuid.uuid4(), half), (uuid.uuid4(), half)]
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, p, correct=5, unit_id=u, submitted_at=now - timedelta(hours=1))
         for p, u in entrants]
    )
    return {"city": city, "full": full, "half": half, "empty": empty}


async def test_scheduled_nudges_go_out_once_per_slot(pool: asyncpg.Pool, boards: Leaderboards) -> None:
    contest, round_id = uuid.uuid4(), uuid.uuid4()
    clock = Clock(datetime.now(UTC))
    first = ScoringConsumer(pool, boards, clock=clock)
    await _contest_with_units(first, contest, round_id)
    await pool.execute(
        """INSERT INTO nudge_schedules (contest_id, target_rate, times_local, round_id, enabled)
           VALUES ($1, 0.8, ARRAY['08:00', '16:00'], NULL, true)""",
        contest,
    )
    today = clock.now.astimezone(domain.VIETNAM).date()
    eight = datetime(today.year, today.month, today.day, 8, 0, tzinfo=domain.VIETNAM)

    clock.now = eight - timedelta(minutes=1)
    await first.tick()
    assert await _nudges(pool) == []

    # Two worker replicas at once, then again and again: one nudge for the 08:00 slot.
    clock.now = eight + timedelta(seconds=20)
    second = ScoringConsumer(pool, boards, clock=clock)
    await asyncio.gather(first.tick(), second.tick(), first.tick())
    await first.tick()
    clock.now = eight + timedelta(minutes=30)
    await ScoringConsumer(pool, boards, clock=clock).tick()  # a restarted worker
    sent = await _nudges(pool)
    assert len(sent) == 1
    data = sent[0]["data"]
    assert sent[0]["id"] == data["nudge_id"]
    assert (data["contest_id"], data["round_id"], data["round_title"], data["target_rate"]) == (
        str(contest), str(round_id), "Tuần 1", 0.8
    )
    # Leaf units with a headcount below 80 %, lowest first (the city has sub-units).
    assert [(u["code"], u["participants"], u["headcount"], u["rate"]) for u in data["units"]] == [
        ("P03", 0, 3, 0.0), ("P02", 2, 4, 0.5)
    ]
    slot = await pool.fetchrow("SELECT local_date, time_local, nudge_id FROM nudge_slots")
    assert (slot["local_date"], slot["time_local"], str(slot["nudge_id"])) == (today, "08:00", data["nudge_id"])

    # The 16:00 slot is its own; past the lateness window a slot is never sent.
    clock.now = eight + timedelta(hours=8, minutes=5)
    await first.tick()
    assert len(await _nudges(pool)) == 2
    await pool.execute("DELETE FROM nudge_slots")
    clock.now = eight + timedelta(hours=9, minutes=1)
    await first.tick()
    assert len(await _nudges(pool)) == 2


async def test_a_scheduled_nudge_needs_an_open_round(pool: asyncpg.Pool, boards: Leaderboards) -> None:
    contest, round_id = uuid.uuid4(), uuid.uuid4()
    clock = Clock(datetime.now(UTC))
    consumer = ScoringConsumer(pool, boards, clock=clock)
    await _contest_with_units(consumer, contest, round_id)
    await pool.execute(
        """INSERT INTO nudge_schedules (contest_id, target_rate, times_local, round_id, enabled)
           VALUES ($1, 1, ARRAY['08:00'], $2, true)""",
        contest, round_id,
    )
    clock.now = datetime.now(UTC) + timedelta(days=3)  # the round has closed
    local = clock.now.astimezone(domain.VIETNAM)
    clock.now = datetime(local.year, local.month, local.day, 8, 1, tzinfo=domain.VIETNAM)
    await consumer.tick()
    assert await _nudges(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM nudge_slots WHERE nudge_id IS NULL") == 1


async def test_the_clock_loop_runs_until_stopped(pool: asyncpg.Pool, boards: Leaderboards) -> None:
    contest, round_id = uuid.uuid4(), uuid.uuid4()
    consumer = ScoringConsumer(pool, boards)
    await _contest_with_units(consumer, contest, round_id)
    now = datetime.now(UTC).astimezone(domain.VIETNAM)
    await pool.execute(
        """INSERT INTO nudge_schedules (contest_id, target_rate, times_local, round_id, enabled)
           VALUES ($1, 1, ARRAY[$2], NULL, true)""",
        contest, now.strftime("%H:%M"),
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(consumer.keep_time(stop, interval_s=0.05))
    try:
        for _ in range(100):
            if await _nudges(pool):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)
    assert len(await _nudges(pool)) == 1


async def test_issue_3_payloads_through_the_real_bus(
    pool: asyncpg.Pool, boards: Leaderboards, redis: Redis, bus_factory: Callable[..., Awaitable[Bus]]
) -> None:
    bus = await bus_factory("scoring", retry_delays_s=(1,))
    consumer = ScoringConsumer(pool, boards)
    await bus.declare_consumer_queues(sorted(consumer.handlers()))
    round_id, citizen, official, blank = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await bus.publish(ev.round_opened(
        round_id, groups=[{"code": "cbcc", "name": "Cán bộ"}, {"code": "dan", "name": "Nhân dân"}],
        group_prizes={"dan": [{"name": "Giải Nhất (dân)", "count": 1}]}, require_all_answered=True, freeze_s=600,
    ))
    await bus.publish(ev.attempt_submitted(round_id, citizen, correct=6, group="dan", answered_all=True))
    await bus.publish(ev.attempt_submitted(round_id, official, correct=4, group="cbcc", answered_all=True))
    await bus.publish(ev.attempt_submitted(round_id, blank, correct=10, group="dan", answered_all=False))
    await bus.publish(ev.round_closed(round_id, submitted_count=3))

    stop = asyncio.Event()
    running = asyncio.create_task(bus.consume(consumer.handlers(), batch_size=200, batch_wait_s=0.02, stop=stop))
    try:
        for _ in range(200):
            if await pool.fetchval("SELECT finalised_at IS NOT NULL FROM rounds WHERE round_id = $1", round_id):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
    assert await _winners(pool, round_id) == [
        ("cbcc", 1, official, "Giải Nhất"), ("dan", 1, citizen, "Giải Nhất (dân)")
    ]
    assert await _members(redis, board_key(round_id)) == [str(citizen), str(official)]
    assert await redis.hget(round_meta_key(round_id), "final") == b"1"

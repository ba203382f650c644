"""The consumer against the real PostgreSQL, Redis and (once) RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from services.core.bus import Bus
from services.core.events import ATTEMPT_SCORED
from services.scoring import domain
from services.scoring.leaderboards import Leaderboards, board_key
from services.scoring.tests import builders as ev
from services.scoring.worker import RoundNotOpened, ScoringConsumer, UnknownRound


async def _outbox(pool: asyncpg.Pool, event_type: str = ATTEMPT_SCORED) -> list[dict]:
    rows = await pool.fetch("SELECT body FROM outbox WHERE type = $1 ORDER BY id", event_type)
    return [orjson.loads(r["body"]) for r in rows]


async def _board(redis: Redis, key: str) -> list[tuple[str, int]]:
    rows: list[tuple[bytes, float]] = await redis.zrevrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
    return [(member.decode(), int(score)) for member, score in rows]


def _live(correct: int, duration_s: float, after_s: float) -> int:
    return domain.live_score(correct, int(duration_s * 1000), int(after_s))


async def test_a_batch_is_scored_stored_announced_and_ranked(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id, an, binh, chi = (uuid.uuid4() for _ in range(4))
    await consumer.on_round_opened([ev.round_opened(round_id)])
    batch = [
        ev.attempt_submitted(round_id, an, correct=8, duration_s=300, submitted_after_s=3600, name="An"),
        ev.attempt_submitted(round_id, binh, correct=8, duration_s=200, submitted_after_s=7200, name="Bình"),
        ev.attempt_submitted(round_id, chi, correct=10, duration_s=500, submitted_after_s=60, name="Chi"),
    ]
    await consumer.on_attempts_submitted(batch)

    rows = await pool.fetch("SELECT * FROM results ORDER BY correct DESC, duration_ms")
    assert [(r["participant_id"], r["correct"], r["total"], r["duration_ms"]) for r in rows] == [
        (chi, 10, 10, 500_000), (binh, 8, 10, 200_000), (an, 8, 10, 300_000)
    ]
    assert all(r["round_id"] == round_id and r["attempt_number"] == 1 for r in rows)

    scored = await _outbox(pool)
    assert sorted(e["data"]["attempt_id"] for e in scored) == sorted(e.data["attempt_id"] for e in batch)
    chi_event = next(e for e in scored if e["data"]["participant_id"] == str(chi))
    assert chi_event["type"] == ATTEMPT_SCORED
    assert chi_event["data"] == {
        "attempt_id": batch[2].data["attempt_id"], "round_id": str(round_id), "participant_id": str(chi),
        "correct": 10, "total": 10, "duration_ms": 500_000,
    }

    assert await _board(redis, board_key(round_id)) == [
        (str(chi), _live(10, 500, 60)), (str(binh), _live(8, 200, 7200)), (str(an), _live(8, 300, 3600))
    ]
    assert await redis.hget("scoring:names", str(binh)) == "Bình".encode()


async def test_the_same_batch_again_changes_nothing(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id = uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    batch = [ev.attempt_submitted(round_id, uuid.uuid4(), correct=c) for c in (3, 7, 9)]
    await consumer.on_attempts_submitted(batch)
    before = (await pool.fetchval("SELECT count(*) FROM results"), len(await _outbox(pool)),
              await _board(redis, board_key(round_id)))

    await consumer.on_attempts_submitted(batch)
    await consumer.on_attempts_submitted([batch[1], batch[1]])  # a duplicate inside one batch too

    after = (await pool.fetchval("SELECT count(*) FROM results"), len(await _outbox(pool)),
             await _board(redis, board_key(round_id)))
    assert after == before == (3, 3, before[2])
    assert len(before[2]) == 3


async def test_a_retry_after_redis_lost_the_write_puts_it_on_the_board(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id, who = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    event = ev.attempt_submitted(round_id, who, correct=6)
    await consumer.on_attempts_submitted([event])
    await redis.flushdb()  # as if the pipeline had failed after the commit

    await consumer.on_attempts_submitted([event])

    assert await _board(redis, board_key(round_id)) == [(str(who), _live(6, 300, 3600))]
    assert len(await _outbox(pool)) == 1


async def test_attempt_before_its_round_opened_is_retried_later(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id, who = uuid.uuid4(), uuid.uuid4()
    early = ev.attempt_submitted(round_id, who, correct=5)
    with pytest.raises(RoundNotOpened):
        await consumer.on_attempts_submitted([early])
    assert await pool.fetchval("SELECT count(*) FROM results") == 0
    assert await redis.exists(board_key(round_id)) == 0

    # round.opened reaches another worker process: this one learns the key from PostgreSQL.
    await ScoringConsumer(pool, consumer.boards).on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted([early])
    assert await pool.fetchval("SELECT correct FROM results WHERE participant_id = $1", who) == 5


async def test_the_board_keeps_each_participants_best_attempt(consumer: ScoringConsumer, redis: Redis) -> None:
    round_id, who = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, who, correct=8, submitted_after_s=100)])
    best = _live(8, 300, 100)
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, who, correct=7, submitted_after_s=200, attempt_number=2)]
    )
    assert await _board(redis, board_key(round_id)) == [(str(who), best)]
    # Equal again but later: the earlier one still counts.
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, who, correct=8, submitted_after_s=300, attempt_number=3)]
    )
    assert await _board(redis, board_key(round_id)) == [(str(who), best)]
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, who, correct=8, duration_s=100, submitted_after_s=400, attempt_number=4)]
    )
    assert await _board(redis, board_key(round_id)) == [(str(who), _live(8, 100, 400))]


async def test_unit_and_group_boards_include_every_ancestor(consumer: ScoringConsumer, redis: Redis) -> None:
    round_id, who, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    city, district, ward, elsewhere = (uuid.uuid4() for _ in range(4))
    await consumer.on_units_changed(
        [ev.units_changed([(city, "Thành phố", None), (district, "Quận Ba Đình", city),
                           (ward, "Phường Kim Mã", district), (elsewhere, "Sở Tư pháp", city)])]
    )
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted(
        [
            ev.attempt_submitted(round_id, who, correct=9, unit_id=ward, group="cbcc"),
            ev.attempt_submitted(round_id, other, correct=4, unit_id=elsewhere),
        ]
    )
    members = {
        key: [m for m, _ in await _board(redis, key)]
        for key in [board_key(round_id, unit_id=u) for u in (city, district, ward, elsewhere)]
        + [board_key(round_id, group="cbcc")]
    }
    assert members == {
        board_key(round_id, unit_id=city): [str(who), str(other)],
        board_key(round_id, unit_id=district): [str(who)],
        board_key(round_id, unit_id=ward): [str(who)],
        board_key(round_id, unit_id=elsewhere): [str(other)],
        board_key(round_id, group="cbcc"): [str(who)],
    }
    assert await redis.hget("scoring:unit_names", str(ward)) == "Phường Kim Mã".encode()
    assert await redis.hget("scoring:units_of", str(who)) == str(ward).encode()


async def test_an_older_units_snapshot_arriving_late_is_ignored(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    newer = ev.units_changed([(a, "Sở Y tế", None), (b, "Sở Giáo dục", None)])
    older = ev.units_changed([(a, "Sở Y tế (cũ)", None)], occurred_at=newer.occurred_at - timedelta(minutes=1))
    await consumer.on_units_changed([newer])
    await consumer.on_units_changed([older])
    assert {r["name"] for r in await pool.fetch("SELECT name FROM units")} == {"Sở Y tế", "Sở Giáo dục"}
    # A newer snapshot replaces the tree, dropping units no longer in it.
    await consumer.on_units_changed([ev.units_changed([(b, "Sở Giáo dục và Đào tạo", None)])])
    assert [r["name"] for r in await pool.fetch("SELECT name FROM units")] == ["Sở Giáo dục và Đào tạo"]
    assert await redis.hgetall("scoring:unit_names") == {str(b).encode(): "Sở Giáo dục và Đào tạo".encode()}


async def test_registration_names_win_over_names_carried_by_attempts(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id, who, unit = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, who, correct=3, name="an")])
    assert await pool.fetchval("SELECT full_name FROM participants WHERE participant_id = $1", who) == "an"
    await consumer.on_participants_registered([ev.participant_registered(who, "Nguyễn Thị An", unit, "cbcc")])
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, who, correct=4, name="an", attempt_number=2)])
    row = await pool.fetchrow('SELECT full_name, unit_id, "group" FROM participants WHERE participant_id = $1', who)
    assert tuple(row) == ("Nguyễn Thị An", unit, "cbcc")
    assert await redis.hget("scoring:names", str(who)) == "Nguyễn Thị An".encode()
    assert await redis.hget("scoring:units_of", str(who)) == str(unit).encode()


async def _winners(pool: asyncpg.Pool, round_id: uuid.UUID) -> list[tuple]:
    rows = await pool.fetch(
        "SELECT rank, participant_id, name, prize, prediction_error FROM winners WHERE round_id = $1 ORDER BY rank",
        round_id,
    )
    return [tuple(r) for r in rows]


async def test_finalisation_waits_for_every_counted_attempt_then_ranks_once(
    consumer: ScoringConsumer, pool: asyncpg.Pool
) -> None:
    round_id, an, binh, chi = (uuid.uuid4() for _ in range(4))
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_participants_registered(
        [ev.participant_registered(an, "Trần An"), ev.participant_registered(binh, "Lê Bình"),
         ev.participant_registered(chi, "Phạm Chi")]
    )
    await consumer.on_attempts_submitted(
        [
            # Truth will be 3 participants. Chi is fastest but predicts worst.
            ev.attempt_submitted(round_id, an, correct=9, duration_s=400, prediction=4),
            ev.attempt_submitted(round_id, binh, correct=9, duration_s=500, prediction=3),
            ev.attempt_submitted(round_id, chi, correct=9, duration_s=100, prediction=10),
        ]
    )
    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=4)])
    assert await pool.fetchval("SELECT finalised_at FROM rounds WHERE round_id = $1", round_id) is None
    assert await _winners(pool, round_id) == []

    # The fourth attempt (An's second, worse) arrives after round.closed: now it is final.
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, an, correct=2, attempt_number=2, prediction=3)]
    )
    final = await pool.fetchrow("SELECT finalised_at, truth FROM rounds WHERE round_id = $1", round_id)
    assert final["finalised_at"] is not None and final["truth"] == 3
    expected = [(1, binh, "Lê Bình", "Giải Nhất", 0), (2, an, "Trần An", "Giải Nhì", 1)]
    assert await _winners(pool, round_id) == expected

    # Again, and from every path: nothing changes.
    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=4)])
    assert await consumer.finalise_if_complete(round_id) is False
    assert await pool.fetchval("SELECT finalised_at FROM rounds WHERE round_id = $1", round_id) == final["finalised_at"]
    assert await _winners(pool, round_id) == expected


async def test_round_closed_before_round_opened_is_retried(consumer: ScoringConsumer, pool: asyncpg.Pool) -> None:
    round_id = uuid.uuid4()
    with pytest.raises(UnknownRound):
        await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=0)])
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=0)])
    assert await pool.fetchval("SELECT finalised_at IS NOT NULL FROM rounds WHERE round_id = $1", round_id)
    assert await _winners(pool, round_id) == []


async def test_all_correct_truth_and_contest_wide_prizes(consumer: ScoringConsumer, pool: asyncpg.Pool) -> None:
    contest = uuid.uuid4()
    week1, week2 = uuid.uuid4(), uuid.uuid4()
    people = [uuid.uuid4() for _ in range(4)]
    rules = {
        "prize_scope": "contest",
        "tie_break": ["correct", "duration", "prediction_error"],
        "prediction": {"text": "Bao nhiêu người trả lời đúng tất cả?", "target": "all_correct"},
        "prizes": [{"name": "Giải Nhất", "count": 1}, {"name": "Khuyến khích", "count": 2}],
    }
    for week in (week1, week2):
        await consumer.on_round_opened([ev.round_opened(week, contest, **rules)])
        await consumer.on_attempts_submitted(
            [ev.attempt_submitted(week, p, correct=10 if i < 2 else 9, duration_s=100 + i, prediction=2)
             for i, p in enumerate(people)]
        )
        await consumer.on_rounds_closed([ev.round_closed(week, submitted_count=4)])
    assert await pool.fetchval("SELECT truth FROM rounds WHERE round_id = $1", week1) == 2
    assert [w[1] for w in await _winners(pool, week1)] == people[:3]
    # In week 2 the week-1 winners may not win again: only the fourth person is left.
    assert [(w[0], w[1], w[3]) for w in await _winners(pool, week2)] == [(4, people[3], "Giải Nhất")]


async def test_scoring_through_the_real_bus(
    pool: asyncpg.Pool, boards: Leaderboards, redis: Redis, bus_factory: Callable[..., Awaitable[Bus]]
) -> None:
    bus = await bus_factory("scoring", retry_delays_s=(1,))
    consumer = ScoringConsumer(pool, boards)
    await bus.declare_consumer_queues(sorted(consumer.handlers()))
    round_id, who = uuid.uuid4(), uuid.uuid4()
    # The attempt overtakes its round.opened: it must be retried, not lost.
    await bus.publish(ev.attempt_submitted(round_id, who, correct=7, name="Đỗ Hùng", prediction=1))
    await bus.publish(ev.round_opened(round_id))
    await bus.publish(ev.participant_registered(who, "Đỗ Văn Hùng"))
    await bus.publish(ev.round_closed(round_id, submitted_count=1))

    stop = asyncio.Event()
    running = asyncio.create_task(bus.consume(consumer.handlers(), batch_size=200, batch_wait_s=0.02, stop=stop))
    try:
        for _ in range(200):  # the retry of the early attempt comes after 1 s
            if await pool.fetchval("SELECT finalised_at IS NOT NULL FROM rounds WHERE round_id = $1", round_id):
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await running
    assert await pool.fetchval("SELECT correct FROM results WHERE participant_id = $1", who) == 7
    assert await _winners(pool, round_id) == [(1, who, "Đỗ Văn Hùng", "Giải Nhất", 0)]
    assert await redis.zscore(board_key(round_id), str(who)) == _live(7, 300, 3600)
    dead = await bus.channel.declare_queue(bus.topology.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    assert dead.declaration_result.message_count == 0

"""`python -m services.scoring rebuild-leaderboards`: Redis is a projection of PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import asyncpg
from redis.asyncio import Redis

from services.scoring.leaderboards import NAMES_MARKER, Leaderboards, board_key, rebuild_leaderboards
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer


async def _snapshot(redis: Redis) -> dict[bytes, object]:
    """Every key of the service's Redis database with its content."""
    state: dict[bytes, object] = {}
    async for key in redis.scan_iter(match="scoring:*"):
        kind = await redis.type(key)
        if kind == b"zset":
            state[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            state[key] = await redis.smembers(key)
        else:
            state[key] = await redis.hgetall(key)
    return state


async def _two_rounds(consumer: ScoringConsumer) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    city, ward = uuid.uuid4(), uuid.uuid4()
    week1, week2 = uuid.uuid4(), uuid.uuid4()
    await consumer.on_units_changed([ev.units_changed([(city, "Thành phố", None), (ward, "Phường 1", city)])])
    people = [uuid.uuid4() for _ in range(5)]
    await consumer.on_participants_registered([ev.participant_registered(p, f"Người {i}", ward) for i, p in
                                               enumerate(people)])
    for week in (week1, week2):
        await consumer.on_round_opened([ev.round_opened(week)])
        await consumer.on_attempts_submitted(
            [ev.attempt_submitted(week, p, correct=i + 3, unit_id=ward, group="dan" if i % 2 else None,
                                  attempt_number=n, duration_s=100 * n)
             for i, p in enumerate(people) for n in (1, 2)]
        )
    return week1, week2, city, ward


async def test_rebuild_restores_every_board_exactly(
    consumer: ScoringConsumer, pool: asyncpg.Pool, boards: Leaderboards, redis: Redis
) -> None:
    await _two_rounds(consumer)
    before = await _snapshot(redis)
    # Per round: boards of the round, city, ward, group "dan", the board index and the
    # round's meta (with its marker); three name hashes.
    assert len(before) == 2 * 6 + 3
    await redis.flushdb()

    report = await rebuild_leaderboards(pool, boards)

    # The same, and the name hashes' marker.
    marker = {NAMES_MARKER.encode(): {b"built_on": (await boards.server_id()).encode()}}
    assert await _snapshot(redis) == {**before, **marker}
    assert (report.rounds, report.entries, report.boards) == (2, 10, 8)


async def test_rebuild_follows_a_changed_unit_tree_and_can_take_one_round(
    consumer: ScoringConsumer, pool: asyncpg.Pool, boards: Leaderboards, redis: Redis
) -> None:
    week1, week2, city, ward = await _two_rounds(consumer)
    await redis.zadd(board_key(week1), {"not-a-participant": 1})
    await redis.zadd(board_key(week2), {"not-a-participant": 1})

    await rebuild_leaderboards(pool, boards, week1)

    assert await redis.zscore(board_key(week1), "not-a-participant") is None
    assert await redis.zscore(board_key(week2), "not-a-participant") == 1  # the other round untouched

    # The ward moves out from under the city: units.changed rebuilds both rounds itself.
    await consumer.on_units_changed([ev.units_changed([(city, "Thành phố", None), (ward, "Phường 1", None)])])
    for week in (week1, week2):
        assert not await redis.exists(board_key(week, unit_id=city))
        assert await redis.zcard(board_key(week, unit_id=ward)) == 5
    assert await pool.fetchval("SELECT count(*) FROM pending_rebuilds") == 0


async def test_the_cli_command(
    consumer: ScoringConsumer, redis: Redis, test_env: dict[str, str]
) -> None:
    week1, week2, _, _ = await _two_rounds(consumer)
    before = await _snapshot(redis)
    await redis.flushdb()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scoring", "rebuild-leaderboards", "--round", str(week2),
        env={**os.environ, **test_env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"rebuilt 4 board(s) of 1 round(s), 5 entrant(s)" in err
    after = await _snapshot(redis)
    assert not any(str(week1).encode() in key for key in after)
    marker = {NAMES_MARKER.encode(): {b"built_on": (await redis.info("server"))["run_id"].encode()}}
    assert {**{k: v for k, v in before.items() if str(week1).encode() not in k}, **marker} == after

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scoring", "migrate", env={**os.environ, **test_env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0 and b"scoring: 0 migration(s) applied" in err, err.decode()

"""Lost boards heal themselves: after Redis loses its data (a flush here, a restart of a
private server below) every board comes back equal to the ranking PostgreSQL holds,
scores included, with no new result needed, and a frozen round is never shown live."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from services.core.private_servers import RedisServer
from services.core.testing import running_app
from services.scoring import domain, store
from services.scoring.app import create_app
from services.scoring.leaderboards import NAMES, Leaderboards, placement, rebuild_rounds, round_meta_key
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

Board = list[tuple[str, int, int]]  # (participant, correct, duration_ms), best first

# The round closes 7 days after it opens; its board freezes 3 days before that.
FREEZE_S = 3 * 86400
FREEZE_AFTER_S = 4 * 86400


class Contest:
    """Two rounds with units (a city and two wards) and groups: `frozen` is in its freeze
    (some entries were submitted after it), `plain` never freezes."""

    def __init__(self) -> None:
        self.city, self.ward1, self.ward2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.frozen, self.plain = uuid.uuid4(), uuid.uuid4()
        self.people = [uuid.uuid4() for _ in range(12)]
        # Improves after the freeze: the live boards show more than the frozen ones.
        self.climber = self.people[0]

    async def play(self, consumer: ScoringConsumer) -> None:
        await consumer.on_units_changed([ev.units_changed([
            (self.city, "Thành phố", None), (self.ward1, "Phường 1", self.city), (self.ward2, "Phường 2", self.city),
        ])])
        await consumer.on_participants_registered([
            ev.participant_registered(p, f"Người {i}", self.ward(i)) for i, p in enumerate(self.people)
        ])
        groups = [{"code": "cbcc", "name": "Cán bộ"}, {"code": "dan", "name": "Nhân dân"}]
        await consumer.on_round_opened([ev.round_opened(self.frozen, groups=groups, freeze_s=FREEZE_S)])
        await consumer.on_round_opened([ev.round_opened(self.plain, groups=groups)])
        for round_id in (self.frozen, self.plain):
            await consumer.on_attempts_submitted(self.attempts(round_id, first=True))
            await consumer.on_attempts_submitted(self.attempts(round_id, first=False))

    def ward(self, i: int) -> uuid.UUID:
        return self.ward1 if i % 2 else self.ward2

    def attempts(self, round_id: uuid.UUID, *, first: bool) -> list[Any]:
        """Distinct scores for everyone; the second attempts come after the freeze."""
        events = []
        for i, person in enumerate(self.people):
            if first:
                correct, after_s = 2 + i % 7, 3600 + 60 * i
            elif person == self.climber or i % 3 == 0:
                correct, after_s = 10, FREEZE_AFTER_S + 3600 + 60 * i
            else:
                continue
            events.append(ev.attempt_submitted(
                round_id, person, correct=correct, duration_s=100 + 7 * i + (0 if first else 1),
                submitted_after_s=after_s, unit_id=self.ward(i), group="dan" if i % 3 else "cbcc",
                attempt_number=1 if first else 2, name=f"Người {i}",
            ))
        return events


async def pg_boards(pool: asyncpg.Pool, round_id: uuid.UUID, submitted_before: datetime | None = None
                    ) -> dict[str, Board]:
    """Every board of the round as PostgreSQL ranks it, worked out here on its own: each
    participant's best counting entry on the overall board, the board of their unit and
    of every unit above it, and their group's."""
    rows = await pool.fetch(
        """
        SELECT DISTINCT ON (participant_id) participant_id, correct, duration_ms, submitted_at, unit_id, "group"
        FROM results WHERE round_id = $1 AND counts AND ($2::timestamptz IS NULL OR submitted_at < $2)
        ORDER BY participant_id, correct DESC, duration_ms, submitted_at
        """,
        round_id, submitted_before,
    )
    parent_of = {r["id"]: r["parent_id"] for r in await pool.fetch("SELECT id, parent_id FROM units")}
    boards: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        suffixes = [""]
        unit = r["unit_id"]
        while unit is not None:
            suffixes.append(f":unit:{unit}")
            unit = parent_of.get(unit)
        if r["group"]:
            suffixes.append(f":group:{r['group']}")
        for suffix in suffixes:
            boards[suffix].append(r)
    return {
        suffix: [(str(r["participant_id"]), r["correct"], r["duration_ms"])
                 for r in sorted(entries, key=lambda r: (-r["correct"], r["duration_ms"], r["submitted_at"]))]
        for suffix, entries in boards.items()
    }


async def redis_boards(redis: Redis, round_id: uuid.UUID) -> tuple[dict[str, Board], dict[str, Board]]:
    """(live boards, frozen boards) of the round in Redis, by the same suffixes."""
    live: dict[str, Board] = {}
    frozen: dict[str, Board] = {}
    prefix = f"scoring:lb:{round_id}"
    async for raw in redis.scan_iter(match=f"{prefix}*"):
        key = raw.decode()
        rows: list[tuple[bytes, float]] = await redis.zrevrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        board = [(member.decode(), *domain.decode_live_score(score)) for member, score in rows]
        suffix = key[len(prefix):]
        if suffix.startswith(":frozen"):
            frozen[suffix[len(":frozen"):]] = board  # type: ignore[assignment]
        else:
            live[suffix] = board  # type: ignore[assignment]
    return live, frozen


async def exact(pool: asyncpg.Pool, redis: Redis, contest: Contest) -> bool:
    freeze_at = ev.OPENS_AT + timedelta(seconds=FREEZE_AFTER_S)
    live, frozen = await redis_boards(redis, contest.frozen)
    plain_live, plain_frozen = await redis_boards(redis, contest.plain)
    return (
        live == await pg_boards(pool, contest.frozen)
        and frozen == await pg_boards(pool, contest.frozen, freeze_at)
        and plain_live == await pg_boards(pool, contest.plain)
        and plain_frozen == {}
    )


async def wait_for(condition: Any, timeout_s: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout_s} s")
        await asyncio.sleep(0.05)


async def test_after_a_flush_the_watch_rebuilds_every_board_exactly_without_a_new_result(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    contest = Contest()
    await contest.play(consumer)
    assert await exact(pool, redis, contest)  # the boards the worker wrote are the reference's
    names_before = await redis.hgetall(NAMES)
    meta_before = await redis.hgetall(round_meta_key(contest.frozen))
    await redis.flushdb()

    stop = asyncio.Event()
    watch = asyncio.create_task(consumer.keep_watch(stop, 0.05))
    try:
        await wait_for(lambda: exact(pool, redis, contest))
    finally:
        stop.set()
        await watch
    assert await redis.hgetall(NAMES) == names_before
    # The freeze, the groups, the copy taken: all back.
    meta = await redis.hgetall(round_meta_key(contest.frozen))
    assert meta == meta_before
    assert meta[b"copied"] == b"1" and meta[b"built_on"] == (await consumer.boards.server_id()).encode()


async def test_a_batch_for_a_lost_round_rebuilds_the_round_before_landing(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    contest = Contest()
    await contest.play(consumer)
    await redis.flushdb()

    newcomer = uuid.uuid4()
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(contest.plain, newcomer, correct=5, unit_id=contest.ward1)]
    )

    live, _ = await redis_boards(redis, contest.plain)
    assert live == await pg_boards(pool, contest.plain)
    assert len(live[""]) == len(contest.people) + 1  # everyone, not only the newcomer


async def test_a_frozen_round_never_shows_a_live_score_during_or_after_the_rebuild(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis, boards: Leaderboards,
    test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, make_token: Any,
) -> None:
    contest = Contest()
    await contest.play(consumer)
    freeze_at = ev.OPENS_AT + timedelta(seconds=FREEZE_AFTER_S)
    frozen_board = await pg_boards(pool, contest.frozen, freeze_at)
    live_board = await pg_boards(pool, contest.frozen)
    assert frozen_board[""] != live_board[""]  # the climber's live score is not the frozen one

    await redis.flushdb()
    # What an in-flight batch writes after the loss: the climber's live best, on boards
    # without their meta (so without the freeze either).
    info = await store.board_round(pool, contest.frozen)
    assert info is not None
    (best,) = [b for b in await _best(pool, contest.frozen) if b.participant_id == contest.climber]
    await boards.record([placement(contest.frozen, info.opens_at, best, {})])
    # Another process is rebuilding the round: it holds the round's lock.
    rebuilding = redis.lock(f"scoring:rebuild-lock:{contest.frozen}", timeout=30, thread_local=False)
    assert await rebuilding.acquire(blocking=False)

    monkeypatch.setenv("SCORING_REBUILD_WAIT_S", "0.3")
    board_url = f"/api/rounds/{contest.frozen}/leaderboard?limit=100"
    async with running_app(create_app()) as client:
        for url in (board_url, f"{board_url}&unit_id={contest.ward1}", f"{board_url}&group=dan"):
            r = await client.get(url)
            assert r.status_code == 503, r.text  # never the partial, live board
            assert (r.json()["code"], r.headers["retry-after"]) == ("board_rebuilding", "2")
        me = {"Authorization": f"Bearer {make_token(id=contest.climber)}"}
        assert (await client.get(f"/api/rounds/{contest.frozen}/leaderboard/me", headers=me)).status_code == 503
        # A result is PostgreSQL's and is shown; its rank waits for the boards (not the partial one).
        attempt = await pool.fetchval("SELECT attempt_id FROM results WHERE round_id = $1 AND participant_id = $2"
                                      " ORDER BY correct DESC LIMIT 1", contest.frozen, contest.climber)
        r = await client.get(f"/api/attempts/{attempt}/result", headers=me)
        assert (r.status_code, r.json()["correct"], r.json()["rank"]) == (200, 10, None)

        await rebuilding.release()  # the other process died, or finished without the marker
        for suffix, url in (("", board_url), (f":unit:{contest.ward1}", f"{board_url}&unit_id={contest.ward1}"),
                            (":group:dan", f"{board_url}&group=dan")):
            r = await client.get(url)
            assert r.status_code == 200 and r.json()["frozen"] is True, r.text
            shown = [(e["participant_id"], e["correct"], e["duration_ms"]) for e in r.json()["entries"]]
            assert shown == frozen_board[suffix]
        # The participant's own standing is live, frozen or not, and now complete.
        r = await client.get(f"/api/rounds/{contest.frozen}/leaderboard/me", headers=me)
        live_rank = [p for p, _, _ in live_board[""]].index(str(contest.climber)) + 1
        assert r.json()["rank"] == live_rank
        assert (await client.get(f"/api/attempts/{attempt}/result", headers=me)).json()["rank"] == live_rank


async def _best(pool: asyncpg.Pool, round_id: uuid.UUID) -> list[domain.Result]:
    return [b.result for b in await store.best_attempts(pool, round_id)]


class SwapsWhenTold(Leaderboards):
    """Real boards whose rebuild stops between reading PostgreSQL and swapping, until the
    test lets it go: the window in which a batch can land."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.snapshot_read = asyncio.Event()
        self.go = asyncio.Event()

    async def replace_round(self, *args: Any, **kwargs: Any) -> int:
        self.snapshot_read.set()
        await self.go.wait()
        return await super().replace_round(*args, **kwargs)


async def test_a_batch_landing_during_a_rebuild_is_not_lost(
    consumer: ScoringConsumer, pool: asyncpg.Pool, redis: Redis
) -> None:
    contest = Contest()
    await contest.play(consumer)
    await redis.flushdb()
    held = SwapsWhenTold(redis)
    rebuild = asyncio.create_task(rebuild_rounds(pool, held, [contest.plain]))
    await held.snapshot_read.wait()

    # Committed after the rebuild read PostgreSQL, written to Redis before its swap.
    newcomer, improver = uuid.uuid4(), contest.people[5]
    await consumer.on_attempts_submitted([
        ev.attempt_submitted(contest.plain, newcomer, correct=9, duration_s=33, unit_id=contest.ward2, group="dan"),
        ev.attempt_submitted(contest.plain, improver, correct=10, duration_s=20, attempt_number=3,
                             unit_id=contest.ward(5), group="dan", submitted_after_s=9000),
    ])
    held.go.set()
    await rebuild

    live, _ = await redis_boards(redis, contest.plain)
    assert live == await pg_boards(pool, contest.plain)
    assert live[""][0] == (str(improver), 10, 20_000)
    assert str(newcomer) in [p for p, _, _ in live[""]]


async def test_a_restart_from_persisted_data_missing_its_last_writes_is_rebuilt(pool: asyncpg.Pool) -> None:
    server = RedisServer(persistence="aof")
    server.start()
    await asyncio.to_thread(server.wait_ready, 30)
    redis, look = Redis.from_url(server.url), Redis.from_url(server.url)
    stop = asyncio.Event()
    try:
        boards = Leaderboards(redis)
        consumer = ScoringConsumer(pool, boards)
        contest = Contest()
        await contest.play(consumer)
        await consumer.projection.heal()
        built_on = await boards.server_id()
        # What a restart from an append-only file (or a promoted replica) may lack: the
        # last writes, here the climber's best on every board. The markers survive.
        async for key in redis.scan_iter(match=f"scoring:lb:{contest.plain}*"):
            await redis.zrem(key, str(contest.climber))
        await asyncio.to_thread(server.stop)
        server.start()
        await asyncio.to_thread(server.wait_ready, 30)
        assert await look.hget(round_meta_key(contest.plain), "built_on") == built_on.encode()  # no loss to see
        assert not await exact(pool, look, contest)

        watch = asyncio.create_task(consumer.keep_watch(stop, 0.05))
        await wait_for(lambda: exact(pool, look, contest))
        stop.set()
        await watch
        now_on = (await look.info("server"))["run_id"]
        assert now_on != built_on
        for round_id in (contest.frozen, contest.plain):
            assert await look.hget(round_meta_key(round_id), "built_on") == now_on.encode()
    finally:
        stop.set()
        await redis.aclose()
        await look.aclose()
        await asyncio.to_thread(server.remove)

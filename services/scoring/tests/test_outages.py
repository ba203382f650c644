"""An outage of PostgreSQL or Redis does not spend an event's retries: the scoring
consumer waits for the server and scores the event exactly once, in place. Private
servers (killed with SIGKILL, started again on the same port and data) and the shared
RabbitMQ under this run's prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import orjson
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.core import outages
from services.core.bus import Bus
from services.core.db import create_pool, migrate_service
from services.core.events import ATTEMPT_SCORED
from services.core.private_servers import PostgresServer, RedisServer
from services.scoring import domain
from services.scoring.leaderboards import Leaderboards, board_key
from services.scoring.tests import builders as ev
from services.scoring.tests.test_projection import wait_for
from services.scoring.worker import ScoringConsumer


def _waits(dependency: str) -> float:
    return REGISTRY.get_sample_value(
        "hoithi_bus_outage_waits_total", {"service": "scoring", "dependency": dependency}
    ) or 0.0


async def test_an_event_across_a_redis_and_a_postgres_outage_is_scored_once_and_never_retried(
    private_postgres: PostgresServer,
    private_redis: RedisServer,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    await migrate_service(private_postgres.url, "scoring")
    pool = await create_pool(private_postgres.url, "scoring", min_size=1, max_size=4)
    redis = Redis.from_url(private_redis.url, socket_connect_timeout=1, socket_timeout=2)
    look = Redis.from_url(private_redis.url, socket_connect_timeout=1)  # the test's own eyes
    consumer = ScoringConsumer(pool, Leaderboards(redis))
    round_id, participant = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    # Long retry delays: an event that visited a retry queue would still be sitting there.
    bus = await bus_factory("scoring", retry_delays_s=(60, 120))
    await bus.declare_consumer_queues(sorted(consumer.handlers()))  # before anything is published
    stop = asyncio.Event()
    consuming = asyncio.create_task(bus.consume(
        consumer.handlers(), batch_size=10, stop=stop,
        dependencies=[outages.postgres(pool), outages.redis(redis)],
    ))
    submitted = ev.attempt_submitted(round_id, participant, correct=7, duration_s=250, submitted_after_s=3600)
    try:
        # Redis goes away; the submission arrives, is stored, and cannot reach the board.
        await asyncio.to_thread(private_redis.kill)
        redis_waits = _waits("redis")
        await bus.publish(submitted)
        await wait_for(lambda: _async(_waits("redis") > redis_waits))

        async def stored() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM results"))

        await wait_for(stored)  # committed before the board write

        # PostgreSQL goes too, and Redis comes back (empty: no persistence).
        postgres_waits = _waits("postgres")
        await asyncio.to_thread(private_postgres.kill)
        private_redis.start()
        await asyncio.to_thread(private_redis.wait_ready, 30)
        await wait_for(lambda: _async(_waits("postgres") > postgres_waits))

        private_postgres.start()
        await asyncio.to_thread(private_postgres.wait_ready, 60)

        async def on_the_board() -> bool:
            try:
                return await look.zscore(board_key(round_id), str(participant)) is not None
            except OSError:
                return False

        await wait_for(on_the_board, 60)
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 30)

    try:
        assert await pool.fetchval("SELECT count(*) FROM results WHERE attempt_id = $1",
                                   uuid.UUID(submitted.data["attempt_id"])) == 1
        scored = [orjson.loads(r["body"]) for r in await pool.fetch("SELECT body FROM outbox WHERE type = $1",
                                                                     ATTEMPT_SCORED)]
        assert [e["data"]["attempt_id"] for e in scored] == [submitted.data["attempt_id"]]
        assert await look.zscore(board_key(round_id), str(participant)) == domain.live_score(7, 250_000, 3600)
        assert (await look.hget(f"scoring:round:{round_id}", "built_on")) is not None
        for name in (bus.topology.queue, bus.topology.retry_queue(60), bus.topology.retry_queue(120),
                     bus.topology.dead_queue):
            queue = await bus.channel.declare_queue(name, passive=True)
            assert await queue.get(fail=False, timeout=5) is None, name
    finally:
        await look.aclose()
        await redis.aclose()
        await pool.close()


async def _async(value: bool) -> bool:
    return value

"""The provider rate limits: one token bucket per channel in the real Redis, shared by
every worker. Driven by a fake clock passed in, so the counts are exact, not timed."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.core.testing import redis_url_for
from services.notify.ratelimit import RateLimiter
from services.notify.settings import DEFAULT_TEMPLATES_DIR
from services.notify.sms import provider_from_settings
from services.notify.templating import load_catalog
from services.notify.tests.support import (
    FakeSmsProvider,
    SmtpServer,
    code_requested,
    free_port,
    settings_for,
)
from services.notify.worker import build_sender, handlers


def most_in_any_window(times: list[float], window_s: float = 1.0) -> int:
    """The largest number of `times` (sorted) inside any half-open window [t, t + window)."""
    return max((bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis: Redis) -> str:
    """The URL of the (emptied) database the `redis` fixture gives this service's tests."""
    return redis_url_for(request)


def worker_clients(redis_url: str, n: int) -> list[Redis]:
    """Separate connections to the same Redis database, as separate worker processes have."""
    return [Redis.from_url(redis_url) for _ in range(n)]


@pytest.mark.parametrize(("workers", "rate"), [(1, 10.0), (4, 10.0), (8, 3.0), (5, 0.5)])
async def test_workers_sharing_a_bucket_never_exceed_the_rate_in_any_second(
    redis_url: str, workers: int, rate: float
) -> None:
    clients = worker_clients(redis_url, workers)
    limiters = [RateLimiter(client, {"sms": rate}) for client in clients]
    # Every worker wants to send all the time: it tries, sends at once if granted, else
    # comes back exactly when told. Simulated on one fake clock, 20 seconds long.
    due = [(0.001 * n, n) for n in range(workers)]
    granted: list[float] = []
    while due[0][0] < 20:
        now, worker = heapq.heappop(due)
        wait = await limiters[worker].try_take("sms", now=now)
        if wait == 0:
            granted.append(now)
            heapq.heappush(due, (now + 0.0005, worker))
        else:
            assert 0 < wait <= 1 / rate + 1e-9
            heapq.heappush(due, (now + wait, worker))
    for client in clients:
        await client.aclose()

    # Sends are spaced 1/rate apart (to the microsecond: refills are floating point), so
    # no second ever holds more than `rate` of them; and the limit is used, not starved.
    assert min(b - a for a, b in itertools.pairwise(granted)) >= 1 / rate - 1e-6
    assert most_in_any_window(granted, 1.0 - 1e-6) <= max(rate, 1)
    assert len(granted) >= rate * 20 - 1


async def test_channels_have_separate_buckets_and_unlimited_ones_never_wait(redis: Redis) -> None:
    limiter = RateLimiter(redis, {"email": 2.0, "sms": 1.0, "fax": 0})
    assert [await limiter.try_take("email", now=100.0) for _ in range(2)] == [0.0, 0.5]
    assert await limiter.try_take("sms", now=100.0) == 0.0
    assert await limiter.try_take("sms", now=100.5) == pytest.approx(0.5)
    assert [await limiter.try_take("fax", now=100.0) for _ in range(50)] == [0.0] * 50
    assert not limiter.limited("fax") and limiter.limited("sms")


async def test_a_clock_running_behind_earns_no_tokens(redis: Redis) -> None:
    ahead, behind = RateLimiter(redis, {"sms": 1.0}), RateLimiter(redis, {"sms": 1.0})
    assert await ahead.try_take("sms", now=50.0) == 0.0
    assert await behind.try_take("sms", now=40.0) == pytest.approx(1.0)  # no tokens from going back in time
    assert await ahead.try_take("sms", now=51.0) == 0.0


async def test_without_a_fake_clock_redis_time_is_used(redis: Redis) -> None:
    limiter = RateLimiter(redis, {"email": 5.0})
    assert await limiter.try_take("email") == 0.0
    assert 0 < await limiter.try_take("email") <= 0.2
    assert await redis.ttl("notify:rate:email") > 0  # an idle bucket's key expires


async def test_with_redis_unreachable_each_worker_limits_itself_and_stops_asking_for_a_while() -> None:
    connections = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()  # a "Redis" that drops every connection

    port = free_port()
    broken = await asyncio.start_server(hang_up, "127.0.0.1", port)
    unreachable = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(unreachable, {"sms": 4.0})
    try:
        assert await limiter.try_take("sms", now=10.0) == 0.0
        assert await limiter.try_take("sms", now=10.1) == pytest.approx(0.15)
        assert await limiter.try_take("sms", now=10.25) == 0.0
    finally:
        await unreachable.aclose()
        broken.close()
    assert connections == 1  # one failed call; Redis is asked again only after REDIS_RETRY_AFTER_S


async def test_the_sender_spaces_sms_as_the_rate_says(
    pool: asyncpg.Pool, redis: Redis, redis_url: str, smtp: SmtpServer, sms: FakeSmsProvider
) -> None:
    settings = settings_for(smtp, sms, sms_rate_per_s=10, send_concurrency=4)
    provider = provider_from_settings(settings)
    sender = build_sender(settings, pool, load_catalog(DEFAULT_TEMPLATES_DIR), redis=redis, sms_provider=provider)
    second_worker = build_sender(
        settings, pool, load_catalog(DEFAULT_TEMPLATES_DIR), redis=(other := Redis.from_url(redis_url)),
        sms_provider=provider,
    )
    codes = [code_requested("sms", f"09{n:08d}") for n in range(1, 7)]

    started = time.monotonic()
    await asyncio.gather(  # two workers at once, one bucket
        handlers(pool, sender)["code.requested"](codes[:3]),
        handlers(pool, second_worker)["code.requested"](codes[3:]),
    )
    elapsed = time.monotonic() - started
    await provider.aclose()
    await other.aclose()

    assert len(sms.accepted) == 6
    # Six sends at 10/s, the first one free: at least 0.5 s however fast the machine is.
    assert elapsed >= 0.5 - 0.02

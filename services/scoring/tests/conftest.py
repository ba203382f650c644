from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from redis.asyncio import Redis

from services.scoring.leaderboards import Leaderboards
from services.scoring.worker import ScoringConsumer


@pytest.fixture
async def pool(service_pool: Callable[[str], Awaitable[asyncpg.Pool]]) -> asyncpg.Pool:
    return await service_pool("scoring")


@pytest.fixture
def boards(redis: Redis) -> Leaderboards:
    return Leaderboards(redis)


@pytest.fixture
def consumer(pool: asyncpg.Pool, boards: Leaderboards) -> ScoringConsumer:
    return ScoringConsumer(pool, boards)

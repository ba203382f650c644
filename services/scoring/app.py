"""The scoring API's composition root: `gunicorn services.scoring.app:create_app()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from services.core import http
from services.core.db import create_pool
from services.scoring import api
from services.scoring.leaderboards import Leaderboards
from services.scoring.projection import Projection
from services.scoring.settings import ScoringSettings


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = await create_pool(
            settings.database_url, "scoring", min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        app.state.redis = Redis.from_url(settings.redis_url)
        app.state.boards = Leaderboards(app.state.redis)
        app.state.projection = Projection(
            app.state.db, app.state.boards, read_wait_s=settings.scoring_rebuild_wait_s
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.db.close()

    return http.create_app(
        service="scoring",
        settings=settings,
        routers=[api.router],
        resources=resources,
        readiness={"postgres": http.postgres_ready, "redis": http.redis_ready},
        messages=api.MESSAGES,
    )

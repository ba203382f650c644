"""Composition root of the quiz API: `gunicorn 'services.quiz.app:create_app()'` (QUIZ_PORT)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from services.core.db import create_pool
from services.core.http import create_app as create_service_app
from services.core.http import postgres_ready, redis_ready
from services.quiz import api, store
from services.quiz.settings import QuizSettings


def create_app(settings: QuizSettings | None = None) -> FastAPI:
    settings = settings or QuizSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = await create_pool(
            settings.database_url, "quiz", min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        # Short timeouts: Redis only holds autosave copies, and a slow Redis must not
        # hold up a submit (which deletes the copy best effort).
        app.state.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        app.state.round_questions = store.RoundQuestions()
        app.state.shown_questions = api.ShownQuestions()
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.db.close()

    return create_service_app(
        service="quiz",
        settings=settings,
        routers=[api.router],
        resources=resources,
        readiness={"postgres": postgres_ready, "redis": redis_ready},
        messages=api.MESSAGES,
    )

"""The notify API's composition root: `gunicorn ... 'services.notify.app:create_app()'`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.core.db import create_pool
from services.core.http import create_app as create_service_app
from services.core.http import postgres_ready
from services.notify import api
from services.notify.settings import NotifySettings
from services.notify.templating import load_catalog


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        # Loaded here too, so a deploy with a broken template fails at start-up everywhere.
        app.state.templates = load_catalog(settings.templates_dir)
        app.state.db = await create_pool(
            settings.database_url,
            "notify",
            min_size=min(settings.db_pool_min, settings.db_pool_max),
            max_size=settings.db_pool_max,
        )
        try:
            yield
        finally:
            await app.state.db.close()

    # No Redis: notify keeps nothing there, so it is not a readiness dependency.
    return create_service_app(
        service="notify",
        settings=settings,
        routers=[api.router],
        resources=resources,
        readiness={"postgres": postgres_ready},
    )


"""Fixtures of the notify tests (see support.py for the SMTP server they start)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from services.notify.mailer import Mailer
from services.notify.templating import load_catalog
from services.notify.tests.support import SenderFactory, SmtpServer, free_port, settings_for
from services.notify.worker import DeliverySender


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    """A running SMTP server; `await smtp.stop()` closes its port, `start()` reopens it."""
    server = SmtpServer(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def smtp_down() -> AsyncIterator[SmtpServer]:
    """The same, but not started: connections to its port are refused until `start()`."""
    server = SmtpServer(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def pool(service_pool: Callable[[str], Awaitable[asyncpg.Pool]]) -> asyncpg.Pool:
    return await service_pool("notify")


@pytest.fixture
def make_sender(pool: asyncpg.Pool) -> SenderFactory:
    def make(smtp: SmtpServer, **overrides: Any) -> DeliverySender:
        settings = settings_for(smtp, **overrides)
        catalog = load_catalog(settings.templates_dir)
        return DeliverySender(pool, Mailer(settings), catalog, max_attempts=settings.max_send_attempts)

    return make

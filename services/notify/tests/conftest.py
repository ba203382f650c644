"""Fixtures of the notify tests (see support.py for the SMTP and SMS servers they start)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.notify.sms import SmsProvider, provider_from_settings
from services.notify.templating import TemplateCatalog, load_catalog
from services.notify.tests.support import FakeSmsProvider, SenderFactory, SmtpServer, free_port, settings_for
from services.notify.worker import DeliverySender, build_sender


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
def sms() -> Iterator[FakeSmsProvider]:
    """A running fake SMS provider (HTTP on localhost) that answers 200 unless told otherwise."""
    provider = FakeSmsProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
async def pool(service_pool: Callable[[str], Awaitable[asyncpg.Pool]]) -> asyncpg.Pool:
    return await service_pool("notify")


_catalogs: dict[Path, TemplateCatalog] = {}


def catalog_of(folder: Path) -> TemplateCatalog:
    """Loading checks every template (a fraction of a second); once per folder is enough here."""
    if folder not in _catalogs:
        _catalogs[folder] = load_catalog(folder)
    return _catalogs[folder]


@pytest.fixture
async def make_sender(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[SenderFactory]:
    """`make_sender(smtp, sms=None, **settings)`: a sender mailing through `smtp` and texting
    through the fake provider `sms`, or with no provider given through the console provider
    (files in a temporary folder)."""
    providers: list[SmsProvider] = []

    def make(smtp: SmtpServer, sms: FakeSmsProvider | None = None, **overrides: Any) -> DeliverySender:
        if sms is None:
            overrides = {"dev_mail_dir": tmp_path / "mail", **overrides}
        settings = settings_for(smtp, sms, **overrides)
        provider = provider_from_settings(settings)
        providers.append(provider)
        return build_sender(settings, pool, catalog_of(settings.templates_dir), sms_provider=provider)

    yield make
    for provider in providers:
        await provider.aclose()

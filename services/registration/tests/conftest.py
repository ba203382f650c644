"""Fixtures of registration's tests: the real PostgreSQL schema, the app in-process, and
cheap Argon2 parameters so that hashing does not dominate the suite's time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.core.testing import running_app
from services.registration import domain, store
from services.registration.app import create_app

SEED_UNITS = Path(__file__).resolve().parents[1] / "seed" / "units.csv"
PUBLIC_BASE_URL = "https://thi.example.vn"


@pytest.fixture
def registration_env(test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST_KIB": "1024", "PUBLIC_BASE_URL": PUBLIC_BASE_URL}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**test_env, **env}


@pytest.fixture
async def pool(service_pool: Callable[[str], Awaitable[asyncpg.Pool]]) -> asyncpg.Pool:
    return await service_pool("registration")


@pytest.fixture
async def client(registration_env: dict[str, str], pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app()) as client:
        yield client


@pytest.fixture
async def demo_units(pool: asyncpg.Pool) -> dict[str, store.Unit]:
    """The seed's unit tree, by code."""
    await store.import_units_with_outbox(pool, domain.read_csv_table(SEED_UNITS.read_bytes()))
    return {unit.code: unit for unit in await store.all_units(pool)}

"""Fixtures of registration's tests: the real PostgreSQL schema, the app in-process, and
cheap Argon2 parameters so that hashing does not dominate the suite's time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from services.core.tables import read_csv_table
from services.core.testing import running_app
from services.registration import store
from services.registration.app import create_app
from services.registration.passwords import Passwords

SEED_UNITS = Path(__file__).resolve().parents[1] / "seed" / "units.csv"
PUBLIC_BASE_URL = "https://thi.example.vn"
PASSWORD = "mật khẩu 123"
HEADER = "code,name,parent_code,block,headcount"


# --- helpers the API tests share ----------------------------------------------------------

def sign_up(unit_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "full_name": "  Nguyễn   Văn An ",
        "phone": "0912 345 678",
        "email": "An.Nguyen@Example.VN",
        "id_number": "031203004567",
        "birth_date": "1990-01-02",
        "unit_id": str(unit_id),
        "group": "cbcc",
        "password": PASSWORD,
        **overrides,
    }


async def token_for(client: httpx.AsyncClient, login: str, password: str) -> str:
    response = await client.post("/api/auth/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_organiser(pool: asyncpg.Pool, login: str = "btc", password: str = PASSWORD) -> uuid.UUID:
    passwords = Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)
    return await store.create_staff_with_outbox(pool, store.NewStaff(
        login=login, full_name="Ban Tổ chức", role="organiser", unit_id=None, email=None, phone=None,
        password_hash=await passwords.hash(password),
    ))


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in response.json().get("errors", [])]


# --- fixtures ---------------------------------------------------------------------------

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
async def client(
    registration_env: dict[str, str], pool: asyncpg.Pool, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    # `redis` empties this service's Redis database: no login failures carried over.
    async with running_app(create_app()) as client:
        yield client


@pytest.fixture
def app_with(
    registration_env: dict[str, str], pool: asyncpg.Pool, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """`async with app_with(SETTING="value") as client:` — the app with those settings."""

    @asynccontextmanager
    async def make(**env: str) -> AsyncIterator[httpx.AsyncClient]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        async with running_app(create_app()) as client:
            yield client

    return make


@pytest.fixture
async def demo_units(pool: asyncpg.Pool) -> dict[str, store.Unit]:
    """The seed's unit tree, by code."""
    await store.import_units_with_outbox(pool, read_csv_table(SEED_UNITS.read_bytes()))
    return {unit.code: unit for unit in await store.all_units(pool)}

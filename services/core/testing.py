"""Pytest fixtures every service's tests share (registered in the root conftest.py).

Tests run against the real servers: PostgreSQL database `hoithi_test` (created if
missing; each service's schema dropped and migrated once per run, its tables emptied
before each test), Redis database 15 (flushed before each test), and RabbitMQ with a
bus prefix unique to the run (its queues deleted at the end).
"""

from __future__ import annotations

import io
import os
import random
import socket
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from services.core.auth import Principal, TokenSigner, TokenVerifier, generate_keypair
from services.core.bus import Bus, Topology
from services.core.db import create_database_if_missing, create_pool, migrate_service
from services.core.gateway import KEY_HEADER

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/hoithi_test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RUN_PREFIX = f"test-{uuid.uuid4().hex[:8]}."

_migrated: set[str] = set()


async def _reset_schema(service: str) -> None:
    await create_database_if_missing(TEST_DATABASE_URL)
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {service} CASCADE")
    finally:
        await conn.close()
    await migrate_service(TEST_DATABASE_URL, service)


async def _empty_tables(pool: asyncpg.Pool, schema: str) -> None:
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_migrations'", schema
    )
    if tables:
        names = ", ".join(f'{schema}."{t["tablename"]}"' for t in tables)
        await pool.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
async def service_pool() -> AsyncIterator[Callable[[str], Awaitable[asyncpg.Pool]]]:
    """`pool = await service_pool("quiz")`: a pool on a freshly migrated, empty schema."""
    pools: list[asyncpg.Pool] = []

    async def make(service: str) -> asyncpg.Pool:
        if service not in _migrated:
            await _reset_schema(service)
            _migrated.add(service)
        pool = await create_pool(TEST_DATABASE_URL, service, min_size=1, max_size=8)
        await _empty_tables(pool, service)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


# Each service's tests get their own Redis database, so suites may run side by side.
_REDIS_DB_BY_FOLDER = {"core": 15, "registration": 14, "quiz": 13, "scoring": 12, "notify": 11}


def redis_url_for(request: pytest.FixtureRequest) -> str:
    parts = Path(str(request.path)).parts
    folder = parts[parts.index("services") + 1] if "services" in parts else "core"
    return TEST_REDIS_URL.rsplit("/", 1)[0] + f"/{_REDIS_DB_BY_FOLDER.get(folder, 15)}"


@pytest.fixture
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A real Redis client on an emptied database of this service's own."""
    client = Redis.from_url(redis_url_for(request))
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def bus_factory() -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """`bus = await bus_factory("scoring", retry_delays_s=(1,))`: a connected bus whose
    exchange and queues carry this run's prefix; deleted afterwards."""
    buses: list[Bus] = []

    async def make(service: str, retry_delays_s: tuple[int, ...] = (1, 2), prefetch: int = 64) -> Bus:
        bus = Bus(TEST_AMQP_URL, Topology(RUN_PREFIX, service, retry_delays_s), prefetch=prefetch)
        await bus.connect(give_up_after_s=10)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        t = bus.topology
        for name in [t.queue, t.dead_queue, *(t.retry_queue(d) for d in t.retry_delays_s)]:
            try:
                await bus.channel.queue_delete(name)
            except Exception:
                pass
        await bus.close()


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    generate_keypair(folder)
    return folder


@pytest.fixture(scope="session")
def token_signer(jwt_keys: Path) -> TokenSigner:
    return TokenSigner.from_file(jwt_keys / "signing.pem", issuer="hoithi", audience="hoithi", ttl_s=900)


@pytest.fixture(scope="session")
def token_verifier(jwt_keys: Path) -> TokenVerifier:
    return TokenVerifier.from_dir(jwt_keys / "public", issuer="hoithi", audience="hoithi")


@pytest.fixture
def make_token(token_signer: TokenSigner) -> Callable[..., str]:
    """`make_token(role="participant", unit_id=..., group=...)` → a bearer token."""

    def make(role: str = "participant", **fields: object) -> str:
        principal = Principal(id=fields.pop("id", uuid.uuid4()), role=role, **fields)  # type: ignore[arg-type]
        return token_signer.issue(principal)

    return make


# Every test app trusts this gateway key (test_env), and `running_app` clients send it,
# as the gateway does: a test that plays a caller who bypassed the gateway drops it.
TEST_GATEWAY_KEY = f"test-gateway-{uuid.uuid4().hex}"
VIA_GATEWAY = {KEY_HEADER: TEST_GATEWAY_KEY}


@asynccontextmanager
async def running_app(app: FastAPI, *, via_gateway: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (pools, keys) and talk to it in-process over ASGI, as the
    gateway would (its key on every request) unless `via_gateway=False`."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = VIA_GATEWAY if via_gateway else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield client


@pytest.fixture
def test_env(
    jwt_keys: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """Environment for building a service's settings/app in a test."""
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": redis_url_for(request),
        "AMQP_URL": TEST_AMQP_URL,
        "BUS_PREFIX": RUN_PREFIX,
        "JWT_PUBLIC_KEYS_DIR": str(jwt_keys / "public"),
        "JWT_PRIVATE_KEY_FILE": str(jwt_keys / "signing.pem"),
        "GATEWAY_KEY": TEST_GATEWAY_KEY,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env


def free_port(taken: set[int] | None = None) -> int:
    """A 127.0.0.1 port free now, below the kernel's ephemeral range (32768-60999 on
    Linux), so that the outgoing connections of a stack under test cannot take it before
    its server binds. `taken` remembers ports handed out but not bound yet."""
    taken = _handed_out if taken is None else taken
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port in 20000-32000")


_handed_out: set[int] = set()


def wait_until_healthy(
    base_url: str,
    services: Iterable[str],
    *,
    timeout_s: float,
    exited: Callable[[], str | None],
    logs: Callable[[], str] = lambda: "",
) -> None:
    """Poll the gateway's `/_health/<service>` until every service answers 200. `exited`
    says why the stack died (or None while it runs), which ends the wait at once; `logs`
    goes into the error when time runs out."""
    deadline = time.monotonic() + timeout_s
    pending = set(services)
    with httpx.Client(base_url=base_url, timeout=2) as client:
        while pending and time.monotonic() < deadline:
            if why := exited():
                raise RuntimeError(why)
            for service in list(pending):
                try:
                    if client.get(f"/_health/{service}").status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
    if pending:
        raise RuntimeError(f"not ready after {timeout_s} s: {sorted(pending)}\n{logs()}")


async def delete_bus(amqp_url: str, prefix: str, services: Iterable[str], retry_delays_s: Iterable[int]) -> None:
    """A started stack's queues and exchange (all under `prefix`): a test or benchmark run
    leaves nothing behind on the broker. A failed delete closes the channel, so reconnect."""
    bus = Bus(amqp_url, Topology(prefix, "cleanup", ()))
    await bus.connect(give_up_after_s=5)
    try:
        for service in services:
            for suffix in ("", ".dead", *(f".retry.{d}s" for d in retry_delays_s)):
                try:
                    await bus.channel.queue_delete(f"{prefix}{service}{suffix}")
                except Exception:
                    await bus.close()
                    await bus.connect(give_up_after_s=5)
        await bus.channel.exchange_delete(bus.topology.exchange)
    finally:
        await bus.close()


# --- a hostile upload ---------------------------------------------------------------------

_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
        'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.worksheet+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
        '2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    ),
}


def xlsx_of_many_rows(rows: int) -> bytes:
    """A small, highly compressed workbook of `rows` identical one-cell rows, written by hand."""
    cells = '<row><c t="inlineStr"><is><t>U</t></is></c></row>' * rows
    sheet = ('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
             'spreadsheetml/2006/main"><sheetData><row><c t="inlineStr"><is><t>code</t></is></c></row>'
             f"{cells}</sheetData></worksheet>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, text in _XLSX_PARTS.items():
            archive.writestr(name, text)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    return out.getvalue()

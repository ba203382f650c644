"""Which failures are a dependency's outage: errors raised by the real clients against a
closed port or a stopped server, and errors that are the work's own."""

from __future__ import annotations

import asyncio

import aiosmtplib
import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from services.core import outages
from services.core.private_servers import RedisServer
from services.core.testing import TEST_DATABASE_URL, free_port


async def _raised(work: object) -> BaseException:
    try:
        await work  # type: ignore[misc]
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


async def test_unreachable_servers_are_outages_whichever_client_saw_it() -> None:
    closed = free_port()
    redis = Redis.from_url(f"redis://127.0.0.1:{closed}/0", socket_connect_timeout=1)
    errors = {
        "asyncpg": await _raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{closed}/x", timeout=2)),
        "redis": await _raised(redis.ping()),
        "smtp": await _raised(aiosmtplib.SMTP(hostname="127.0.0.1", port=closed, timeout=2).connect()),
        "http": await _raised(httpx.AsyncClient().get(f"http://127.0.0.1:{closed}/")),
        "tcp": await _raised(asyncio.open_connection("127.0.0.1", closed)),
    }
    await redis.aclose()
    for client, error in errors.items():
        assert outages.is_dependency_outage(error), client
        assert outages.could_not_connect(error), client
    assert outages.dependency_of(errors["redis"]) == "redis"
    # However it is wrapped: `raise ... from`, or inside an exception group.
    try:
        raise RuntimeError("the handler gave up") from errors["asyncpg"]
    except RuntimeError as wrapped:
        assert outages.is_dependency_outage(wrapped)
    assert outages.is_dependency_outage(BaseExceptionGroup("batch", [ValueError("bad"), errors["http"]]))


async def test_the_works_own_errors_are_not_outages() -> None:
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        data_error = await _raised(conn.execute("SELECT 1/0"))
        syntax_error = await _raised(conn.execute("SELEC 1"))
        misuse = await _raised(conn.execute("SELECT $1::int", "not a number"))
    finally:
        await conn.close()
    for error in (data_error, syntax_error, misuse, ValueError("bad payload"), KeyError("round")):
        assert not outages.is_dependency_outage(error), repr(error)

    assert outages.dependency_of(data_error) == "postgres"


def test_a_connection_a_crash_left_mid_query_is_an_outage() -> None:
    # What the next query on such a pooled connection raised in the fault suite (make chaos,
    # PostgreSQL killed); a 500 then, a 503 to retry now.
    from asyncpg.exceptions._base import InternalClientError

    cut_short = InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert outages.is_dependency_outage(cut_short)
    assert not outages.is_dependency_outage(InternalClientError("unexpected codec"))


async def test_a_timeout_after_connecting_is_an_outage_but_may_have_reached_the_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as client:
            error = await _raised(client.post(f"http://127.0.0.1:{port}/sms", json={}))
    finally:
        server.close()
    assert isinstance(error, httpx.ReadTimeout)
    assert outages.is_dependency_outage(error)
    assert not outages.could_not_connect(error)


async def test_waiting_for_a_dependency_ends_when_it_answers(private_redis: RedisServer) -> None:
    client = Redis.from_url(private_redis.url, socket_connect_timeout=1)
    dependency = outages.redis(client)
    try:
        assert await outages.wait_for_dependencies([dependency]) == set()  # up: no wait at all
        await asyncio.to_thread(private_redis.kill)
        seen_down: list[str] = []
        waiting = asyncio.create_task(outages.wait_for_dependencies([dependency], on_down=seen_down.append))
        await asyncio.sleep(1.0)
        assert not waiting.done() and seen_down == ["redis"]
        private_redis.start()
        await asyncio.to_thread(private_redis.wait_ready, 30)
        assert await asyncio.wait_for(waiting, 15) == {"redis"}
    finally:
        await client.aclose()


async def test_a_stop_ends_the_wait(private_redis: RedisServer) -> None:
    client = Redis.from_url(private_redis.url, socket_connect_timeout=1)
    await asyncio.to_thread(private_redis.kill)
    stop = asyncio.Event()
    try:
        waiting = asyncio.create_task(outages.wait_for_dependencies([outages.redis(client)], stop=stop))
        await asyncio.sleep(0.3)
        stop.set()
        assert await asyncio.wait_for(waiting, 2) == {"redis"}
    finally:
        await client.aclose()


@pytest.mark.parametrize("check", ["tcp", "http"])
async def test_tcp_and_http_checks(check: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    up = outages.tcp("smtp", "127.0.0.1", port) if check == "tcp" else outages.http("sms", f"http://127.0.0.1:{port}/")
    assert await up.answers()  # any HTTP answer, even a 405, means the provider is there
    server.close()
    await server.wait_closed()
    assert not await up.answers()

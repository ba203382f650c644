"""The API worker drains its keep-alive connections when it stops (deploy/gunicorn/
draining.py): a request the gateway sends on an idle connection just as the worker is told
to stop is answered, not met by a closed connection. Served by a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deploy.gunicorn.draining import DrainingHttpToolsProtocol
from services.core.testing import free_port


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class QuickDrain(DrainingHttpToolsProtocol):
    drain_s = 1.0


@asynccontextmanager
async def stopping_server(protocol: type[HttpToolsProtocol]) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
            await asyncio.sleep(0.01)
    try:
        yield port, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"POST /submit HTTP/1.1\r\nHost: quiz\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        return await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2)


async def _until_stopped_listening(port: int) -> None:
    async with asyncio.timeout(5):
        while True:
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            probe.close()
            await asyncio.sleep(0.02)


async def test_a_request_on_an_idle_connection_of_a_stopping_worker_is_answered_then_closed() -> None:
    async with stopping_server(QuickDrain) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _request(reader, writer)).startswith(b"HTTP/1.1 200")  # now idle, kept alive
        server.should_exit = True  # SIGTERM: gunicorn's reload or a scale-down
        await _until_stopped_listening(port)
        answer = await _request(reader, writer)
        assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # then it closes, as it said
        writer.close()


async def test_an_idle_connection_nobody_uses_is_closed_after_the_drain() -> None:
    async with stopping_server(QuickDrain) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _request(reader, writer)).startswith(b"HTTP/1.1 200")
        loop = asyncio.get_running_loop()
        server.should_exit = True
        await _until_stopped_listening(port)
        stopped = loop.time()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        assert loop.time() - stopped >= QuickDrain.drain_s * 0.9  # kept open for the drain, not cut at once
        writer.close()


async def test_uvicorns_own_worker_cuts_idle_connections_which_is_the_race() -> None:
    # Why the drain exists: the stock protocol closes the idle connection when told to
    # stop, so a request the gateway sends on it meets a closed connection.
    async with stopping_server(HttpToolsProtocol) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _request(reader, writer)).startswith(b"HTTP/1.1 200")
        server.should_exit = True
        await _until_stopped_listening(port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()

"""One request's failure must not cost the next request on the same connection.

Behind the gateway, nginx reuses keep-alive connections to each service; a connection the
service closes after answering a 500 fails whatever nginx sends on it next (someone else's
submit). Served here by a real uvicorn, over one raw keep-alive connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import orjson
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI

from services.core.http import create_app
from services.core.settings import CoreSettings
from services.core.testing import free_port

router = APIRouter()


@router.post("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("a bug in one route")


@router.post("/database-away")
async def database_away() -> dict[str, str]:
    # A real refusal: nothing listens on port 1.
    await asyncpg.connect("postgresql://postgres@127.0.0.1:1/hoithi", timeout=2)
    return {"status": "unreachable"}


@router.post("/missing-file")
async def missing_file() -> dict[str, str]:
    raise FileNotFoundError(2, "No such file", "/nonexistent/hoithi")  # an OSError that is a bug, not an outage
    return {"status": "unreachable"}


@router.post("/ok")
async def ok() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def _no_resources(app: FastAPI) -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def served(jwt_keys: Path, http: str) -> AsyncIterator[int]:
    settings = CoreSettings(jwt_public_keys_dir=jwt_keys / "public")
    app = create_app(service="core_test", settings=settings, routers=[router], resources=_no_resources, readiness={})
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="critical", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, dict, bytes]:
    writer.write(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_a_500_keeps_the_connection_for_the_next_request(jwt_keys: Path, http: str) -> None:
    async with served(jwt_keys, http) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            status, headers, body = await _exchange(reader, writer, "/boom")
            assert status == 500 and headers["content-type"] == "application/problem+json"
            assert headers.get("connection", "").lower() != "close"
            assert orjson.loads(body)["code"] == "internal"
            for _ in range(3):  # the same connection goes on serving
                status, _, body = await _exchange(reader, writer, "/ok")
                assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        finally:
            writer.close()


async def test_an_unreachable_dependency_is_a_503_to_retry_and_a_bug_a_500(jwt_keys: Path) -> None:
    async with served(jwt_keys, "httptools") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            status, headers, body = await _exchange(reader, writer, "/database-away")
            assert (status, orjson.loads(body)["code"], headers.get("retry-after")) == (503, "unavailable", "5")
            status, _, body = await _exchange(reader, writer, "/missing-file")
            assert (status, orjson.loads(body)["code"]) == (500, "internal")
            status, _, _ = await _exchange(reader, writer, "/ok")
            assert status == 200
        finally:
            writer.close()

"""Input PostgreSQL cannot store, or that is not a body at all, is the client's error
(4xx naming the field), never a 500: every service's app is built by create_app, so
these hold for every route."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from services.core.http import Db, create_app
from services.core.settings import CoreSettings
from services.core.testing import TEST_DATABASE_URL, running_app
from services.core.unstorable_input import nul_paths

router = APIRouter()


class Person(BaseModel):
    name: str
    tags: list[str] = []
    extra: dict[str, str] = {}


@router.post("/people")
async def people(body: Person, db: Db) -> dict[str, str | None]:
    return {"stored": await db.fetchval("SELECT $1::text", body.name)}


@router.get("/search/{slug}")
async def search(slug: str, db: Db, q: Annotated[str, Query()] = "") -> dict[str, str | None]:
    return {"found": await db.fetchval("SELECT $1::text || $2::text", slug, q)}


@router.get("/int4")
async def int4(db: Db, n: int) -> dict[str, int]:  # deliberately unbounded: the last line of defence
    return {"n": await db.fetchval("SELECT $1::int4", n)}


@router.get("/overflow")
async def overflow(db: Db, n: int) -> dict[str, int]:
    return {"n": await db.fetchval("SELECT $1::int8 + 9223372036854775000", n)}


@pytest.fixture
async def client(service_pool, test_env, jwt_keys: Path):
    await service_pool("core_test")
    settings = CoreSettings(database_url=TEST_DATABASE_URL, jwt_public_keys_dir=jwt_keys / "public")

    @asynccontextmanager
    async def resources(app: FastAPI):
        from services.core.db import create_pool

        app.state.db = await create_pool(settings.database_url, "core_test", min_size=1, max_size=2)
        yield
        await app.state.db.close()

    app = create_app(service="core-test", settings=settings, routers=[router], resources=resources, readiness={})
    async with running_app(app) as http:
        yield http


def _fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


async def test_a_nul_anywhere_in_json_is_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/people", content=b'{"name": "ab\\u0000cd"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert _fields(r) == ["name"] and "NUL" in r.json()["errors"][0]["message"]
    r = await client.post("/people", json={"name": "An", "tags": ["ok", "x\x00"], "extra": {"k\x00": "v"}})
    assert r.status_code == 422 and _fields(r) == ["tags.1", "extra.k\\u0000"]
    english = await client.post("/people", json={"name": "\x00"}, headers={"Accept-Language": "en"})
    assert english.json()["detail"] == "Invalid fields: name."
    # An escaped backslash followed by "u0000" is no NUL.
    fine = await client.post("/people", content=b'{"name": "a\\\\u0000"}', headers={"content-type": "application/json"})
    assert fine.status_code == 200 and fine.json() == {"stored": "a\\u0000"}


async def test_a_nul_in_the_query_or_path_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get("/search/demo?q=ab%00cd")
    assert r.status_code == 422 and _fields(r) == ["q"]
    r = await client.get("/search/de%00mo")
    assert r.status_code == 422 and _fields(r) == ["path"]
    assert (await client.get("/search/demo?q=abcd")).json() == {"found": "demoabcd"}


@pytest.mark.parametrize("body", [b"not json", b'{"name": ', b"[" * 20_000 + b"]" * 20_000,
                                  b'{"name": "a\x00b"}', b'{"name": "a\\u0000'])
async def test_a_body_that_is_not_json_is_malformed(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/people", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "malformed_body" and r.headers["content-type"] == "application/problem+json"


async def test_a_body_of_another_type_is_malformed(client: httpx.AsyncClient) -> None:
    r = await client.post("/people", content=b"name=An", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_body"


async def test_json_nested_past_any_parser_is_malformed_not_internal(client: httpx.AsyncClient) -> None:
    deep = b'{"name": "An", "extra": ' + b'{"a": ' * 20_000 + b'"x"' + b"}" * 20_000 + b"}"
    r = await client.post("/people", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_body"


@pytest.mark.parametrize(("path", "n"), [("/int4", 2**40), ("/int4", 2**63), ("/overflow", 10**6)])
async def test_a_value_the_database_refuses_is_a_4xx(client: httpx.AsyncClient, path: str, n: int) -> None:
    r = await client.get(path, params={"n": n})
    assert r.status_code == 422 and r.json()["code"] == "unstorable_value", r.text
    assert (await client.get("/int4", params={"n": 7})).json() == {"n": 7}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for key, item in value.items() for t in (key, *_texts(item))]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


@given(json_values)
def test_nul_paths_finds_a_path_for_every_text_with_a_nul(value: object) -> None:
    assert len(list(nul_paths(value))) == sum("\x00" in text for text in _texts(value))

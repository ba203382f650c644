"""The app factory: health, readiness, metrics, problem+json, correlation ids, auth deps."""

from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from services.core.auth import TokenVerifier
from services.core.gateway import DEVELOPMENT_KEY, KEY_HEADER, GatewayKeyMissing
from services.core.http import ArrivedAt, ClientAddress, Organiser, Participant, create_app, postgres_ready, redis_ready
from services.core.problems import Problem
from services.core.settings import CoreSettings
from services.core.testing import TEST_DATABASE_URL, running_app

router = APIRouter()


class Body(BaseModel):
    phone: str = Field(min_length=10)
    count: int


@router.post("/echo")
async def echo(body: Body) -> dict:
    return body.model_dump()


@router.get("/mine")
async def mine(who: Participant, arrived: ArrivedAt) -> dict:
    return {"id": str(who.id), "arrived": arrived.isoformat()}


@router.get("/address")
async def address(client: ClientAddress) -> dict:
    return {"address": client}


@router.get("/admin")
async def admin(who: Organiser) -> dict:
    return {"ok": True}


@router.get("/conflict")
async def conflict() -> dict:
    raise Problem(409, "already_submitted", deadline_at=datetime(2026, 1, 1, tzinfo=UTC))


def _app(redis_url: str, jwt_dir: str) -> FastAPI:
    from pathlib import Path

    settings = CoreSettings(database_url=TEST_DATABASE_URL, redis_url=redis_url, jwt_public_keys_dir=Path(jwt_dir))

    @asynccontextmanager
    async def resources(app: FastAPI):
        from services.core.db import create_pool

        app.state.db = await create_pool(settings.database_url, "core_test", min_size=1, max_size=2)
        app.state.redis = Redis.from_url(redis_url)
        yield
        await app.state.redis.aclose()
        await app.state.db.close()

    return create_app(
        service="core-test",
        settings=settings,
        routers=[router],
        resources=resources,
        readiness={"postgres": postgres_ready, "redis": redis_ready},
        messages={"already_submitted": ("Conflict", "Bài thi đã được nộp.", "Already submitted.")},
    )


async def test_health_readiness_and_metrics(service_pool, test_env, jwt_keys) -> None:
    await service_pool("core_test")
    async with running_app(_app(test_env["REDIS_URL"], str(jwt_keys / "public"))) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        await client.post("/echo", json={"phone": "0912345678", "count": 1})
        metrics = (await client.get("/metrics")).text
        assert 'hoithi_http_requests_total{method="POST",route="/echo",service="core-test",status="200"}' in metrics


async def test_readiness_fails_when_a_dependency_is_down(service_pool, test_env, jwt_keys) -> None:
    await service_pool("core_test")
    async with running_app(_app("redis://127.0.0.1:1/0", str(jwt_keys / "public"))) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"] == "ok" and ready.json()["checks"]["redis"] != "ok"


async def test_errors_are_problem_json_naming_the_fields(service_pool, test_env, jwt_keys) -> None:
    await service_pool("core_test")
    async with running_app(_app(test_env["REDIS_URL"], str(jwt_keys / "public"))) as client:
        bad = await client.post("/echo", json={"phone": "1"}, headers={"X-Request-Id": "req-1"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        body = bad.json()
        assert {e["field"] for e in body["errors"]} == {"phone", "count"}
        assert "phone" in body["detail"] and body["detail"].startswith("Trường không hợp lệ")
        assert bad.headers["x-request-id"] == "req-1"
        english = await client.post("/echo", json={}, headers={"Accept-Language": "en"})
        assert english.json()["detail"].startswith("Invalid fields")
        conflict = await client.get("/conflict")
        assert conflict.status_code == 409
        assert orjson.loads(conflict.content)["deadline_at"].startswith("2026-01-01T00:00:00")
        assert conflict.json()["detail"] == "Bài thi đã được nộp."
        missing = await client.get("/nowhere")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_tokens_and_roles(service_pool, test_env, jwt_keys, make_token) -> None:
    await service_pool("core_test")
    async with running_app(_app(test_env["REDIS_URL"], str(jwt_keys / "public"))) as client:
        assert (await client.get("/mine")).status_code == 401
        assert (await client.get("/mine", headers={"Authorization": "Bearer junk"})).status_code == 401
        participant = {"Authorization": f"Bearer {make_token('participant')}"}
        organiser = {"Authorization": f"Bearer {make_token('organiser')}"}
        assert (await client.get("/admin", headers=participant)).status_code == 403
        assert (await client.get("/admin", headers=organiser)).status_code == 200
        stamped = await client.get("/mine", headers={**participant, "X-Request-Start": "t=1767225600.250"})
        assert stamped.json()["arrived"] == "2026-01-01T00:00:00.250000+00:00"


async def test_a_caller_that_bypasses_the_gateway_cannot_choose_its_arrival_or_address(
    service_pool, test_env, jwt_keys, make_token
) -> None:
    await service_pool("core_test")
    participant = {"Authorization": f"Bearer {make_token('participant')}"}
    forged = {"X-Request-Start": "t=1767225600.250", "X-Real-IP": "203.0.113.7"}
    app = _app(test_env["REDIS_URL"], str(jwt_keys / "public"))
    async with running_app(app) as through_gateway:
        assert (await through_gateway.get("/address", headers=forged)).json() == {"address": "203.0.113.7"}
    for key in (None, "a-guessed-key"):
        async with running_app(app, via_gateway=False) as direct:
            headers = {**participant, **forged, **({KEY_HEADER: key} if key else {})}
            before = datetime.now(UTC)
            arrived = datetime.fromisoformat((await direct.get("/mine", headers=headers)).json()["arrived"])
            assert before <= arrived <= datetime.now(UTC)
            # httpx's ASGI transport reports the peer as 127.0.0.1.
            assert (await direct.get("/address", headers=headers)).json() == {"address": "127.0.0.1"}


@pytest.mark.parametrize("key", [None, DEVELOPMENT_KEY])
def test_production_refuses_to_start_without_a_real_gateway_key(tmp_path, monkeypatch, key) -> None:
    monkeypatch.delenv("GATEWAY_KEY", raising=False)
    if key:
        monkeypatch.setenv("GATEWAY_KEY", key)
    settings = CoreSettings(app_env="production", gateway_key_file=tmp_path / "absent.key")
    with pytest.raises(GatewayKeyMissing):
        create_app(service="core_test", settings=settings, routers=[], resources=_no_resources, readiness={})
    monkeypatch.setenv("GATEWAY_KEY", "a-real-secret")
    create_app(service="core_test", settings=CoreSettings(app_env="production"), routers=[],
               resources=_no_resources, readiness={})


@asynccontextmanager
async def _no_resources(app: FastAPI):
    yield


def test_verifier_needs_keys(tmp_path) -> None:
    import pytest

    with pytest.raises(ValueError):
        TokenVerifier.from_dir(tmp_path, issuer="hoithi", audience="hoithi")


def test_json_response_writes_what_pydantic_would() -> None:
    # Hot routes skip the response model; the JSON must not change shape because of it.
    import uuid as uuid_module

    from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
    from pydantic import BaseModel

    from services.core.http import json_response

    class Out(BaseModel):
        id: uuid_module.UUID
        at: datetime
        whole_second: datetime
        names: list[str]

    value = {
        "id": AsyncpgUUID(str(uuid_module.uuid4())),
        "at": datetime(2026, 11, 22, 7, 4, 36, 123456, tzinfo=UTC),
        "whole_second": datetime(2026, 11, 22, 7, 4, 36, tzinfo=UTC),
        "names": ["Phường Lê Chân"],
    }
    response = json_response(value, 201)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.body) == orjson.loads(Out(**value).model_dump_json())
    with pytest.raises(TypeError):
        json_response({"not json": object()})

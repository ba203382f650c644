"""The app factory every service's API is built with, and the dependencies its routes
share. Gives each API `/healthz`, `/readyz` (its dependencies answer), `/metrics`
(Prometheus, multiprocess-aware under gunicorn), problem+json errors, JSON logs and a
correlation id taken from the gateway's `X-Request-Id`."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from redis.asyncio import Redis
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.auth import InvalidToken, Principal, TokenVerifier
from services.core.gateway import Gateway
from services.core.logs import configure_logging, correlation_id, new_correlation_id
from services.core.outages import is_dependency_outage
from services.core.problems import MESSAGES, Problem, problem_response, wants_english
from services.core.settings import CoreSettings
from services.core.unstorable_input import RefuseUnstorableInput

log = logging.getLogger(__name__)

REQUESTS = Counter("hoithi_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "hoithi_http_request_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

ReadinessCheck = Callable[[FastAPI], Awaitable[None]]
Resources = Callable[[FastAPI], Any]  # an async context manager factory: set app.state.*, yield, clean up


class RequestContext:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): sets the
    correlation id for logs and events, echoes it, records Prometheus metrics, and
    answers an unexpected error itself.

    That last part is why it exists beside Starlette's own: Starlette's 500 handler
    re-raises after answering, and uvicorn then closes the connection. Behind the
    gateway that connection is one of nginx's pooled keep-alive connections, and the next
    request nginx sends on it (someone else's submit) fails with a 502 that nginx may not
    retry. So one request's bug would cost another request; answered and swallowed
    here, the connection stays usable."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                cid = value.decode("latin-1")[:64]
                break
        token = correlation_id.set(cid or new_correlation_id())
        status = 500
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", correlation_id.get().encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if response_started:
                log.exception("error after the answer started", extra={"path": scope.get("path", "")})
                raise  # half an answer is out: only closing the connection can tell the client
            if is_dependency_outage(exc):
                # A server is away: the client may retry (a write that did land is refused or
                # changes nothing the second time: submits, sign-ups and imports are idempotent).
                log.warning("dependency unavailable", extra={"error": repr(exc), "path": scope.get("path", "")})
                problem = Problem(503, "unavailable", headers={"Retry-After": "5"})
            else:
                log.exception("unhandled error", extra={"path": scope.get("path", "")})
                problem = Problem(500, "internal")
            await problem_response(Request(scope), problem)(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if path not in ("/metrics", "/healthz"):
                LATENCY.labels(self.service, scope["method"], path).observe(time.perf_counter() - started)
                REQUESTS.labels(self.service, scope["method"], path, str(status)).inc()
            correlation_id.reset(token)


# --- dependencies routes share -------------------------------------------------------
# All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop that
# would cost every request on the hot path more than the dependency itself.


async def _db(request: Request) -> asyncpg.Pool:
    return request.app.state.db  # type: ignore[no-any-return]


async def _redis(request: Request) -> Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


async def _settings(request: Request) -> CoreSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "unauthenticated", headers={"WWW-Authenticate": "Bearer"})
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return verifier.verify(token.strip())
    except InvalidToken:
        raise Problem(401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None


async def participant_principal(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if who.role != "participant":
        raise Problem(403, "forbidden")
    return who


async def organiser_principal(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if who.role != "organiser":
        raise Problem(403, "forbidden")
    return who


async def staff_principal(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not who.is_staff:
        raise Problem(403, "forbidden")
    return who


async def arrival_time(request: Request) -> datetime:
    """When the request reached the gateway, if the gateway vouches for its stamp
    (services/core/gateway.py); deadlines are judged on it."""
    gateway: Gateway = request.app.state.gateway
    return gateway.arrival(request.headers, datetime.now(UTC))


async def client_address(request: Request) -> str | None:
    """The client's IP address, as the gateway saw it when it vouches for it."""
    gateway: Gateway = request.app.state.gateway
    return gateway.client_address(request.headers, request.client.host if request.client else None)


Db = Annotated[asyncpg.Pool, Depends(_db)]
RedisClient = Annotated[Redis, Depends(_redis)]
Settings = Annotated[CoreSettings, Depends(_settings)]
CurrentUser = Annotated[Principal, Depends(current_principal)]
Participant = Annotated[Principal, Depends(participant_principal)]
Organiser = Annotated[Principal, Depends(organiser_principal)]
Staff = Annotated[Principal, Depends(staff_principal)]
ArrivedAt = Annotated[datetime, Depends(arrival_time)]
ClientAddress = Annotated[str | None, Depends(client_address)]


def _uuid_subclass(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def json_response(content: Any, status_code: int = 200) -> Response:
    """JSON straight from orjson, for hot routes that build plain data (declare the
    shape with `response_model` for the docs): returning a pydantic model makes FastAPI
    validate it again before serialising. UTC times end in `Z`, as pydantic writes them;
    asyncpg's own UUID type (a subclass orjson does not take) is written as its string."""
    return Response(
        orjson.dumps(content, default=_uuid_subclass, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
    )


# --- readiness checks ------------------------------------------------------------------


async def postgres_ready(app: FastAPI) -> None:
    async with app.state.db.acquire(timeout=1) as conn:
        await conn.fetchval("SELECT 1")


async def redis_ready(app: FastAPI) -> None:
    await app.state.redis.ping()


# --- error handlers --------------------------------------------------------------------

_VALIDATION_VI = {
    "missing": "Thiếu trường bắt buộc",
    "extra_forbidden": "Trường không được phép",
    "string_too_short": "Quá ngắn",
    "string_too_long": "Quá dài",
    "string_pattern_mismatch": "Không đúng định dạng",
    "uuid_parsing": "Mã định danh không hợp lệ",
    "int_parsing": "Phải là số nguyên",
    "datetime_parsing": "Thời gian không hợp lệ",
    "datetime_from_date_parsing": "Thời gian không hợp lệ",
    "date_from_datetime_parsing": "Ngày không hợp lệ",
    "greater_than_equal": "Giá trị quá nhỏ",
    "greater_than": "Giá trị quá nhỏ",
    "less_than_equal": "Giá trị quá lớn",
    "less_than": "Giá trị quá lớn",
    "literal_error": "Giá trị không được chấp nhận",
    "enum": "Giá trị không được chấp nhận",
    "value_error": "Giá trị không hợp lệ",
    "json_invalid": "JSON không hợp lệ",
    "model_attributes_type": "Phải là một đối tượng JSON",
    "dict_type": "Phải là một đối tượng JSON",
    "list_type": "Phải là một danh sách",
    "too_short": "Quá ít phần tử",
    "too_long": "Quá nhiều phần tử",
}


def field_name(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _is_malformed_body(err: Mapping[str, Any]) -> bool:
    """Not JSON (FastAPI's json_invalid), or a body that never was an object: a JSON
    route given a body of another content type sees bytes."""
    if err.get("type") == "json_invalid":
        return True
    return tuple(err.get("loc", ())) == ("body",) and isinstance(err.get("input"), bytes | bytearray)


def _validation_problem(request: Request, exc: RequestValidationError) -> Response:
    english = wants_english(request)
    if any(_is_malformed_body(err) for err in exc.errors()):
        return problem_response(request, Problem(400, "malformed_body"))
    errors = []
    for err in exc.errors():
        message = err.get("msg", "") if english else _VALIDATION_VI.get(err.get("type", ""), err.get("msg", ""))
        if not english and err.get("type") == "value_error" and (ctx := err.get("ctx")) and "error" in ctx:
            message = str(ctx["error"])  # our validators write Vietnamese messages themselves
        errors.append({"field": field_name(err.get("loc", ())), "message": message})
    names = ", ".join(dict.fromkeys(e["field"] for e in errors))
    detail = f"Invalid fields: {names}." if english else f"Trường không hợp lệ: {names}."
    return problem_response(request, Problem(422, "validation", detail=detail, errors=errors))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        return _validation_problem(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {
            # FastAPI's answer to a body it could not parse at all (e.g. JSON nested
            # deeper than the parser's recursion limit).
            400: "malformed_body",
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        return problem_response(
            request, Problem(exc.status_code, code.get(exc.status_code, "internal"), headers=dict(exc.headers or {}))
        )

    @app.exception_handler(asyncpg.DataError)
    @app.exception_handler(asyncpg.exceptions._base.DataError)
    async def on_unstorable(request: Request, exc: Exception) -> Response:
        # The last line of defence: every model bounds its fields, so a value PostgreSQL
        # refuses (out of range, an invalid character) is a gap in a model, not the
        # client's fault alone; still a 4xx, and nothing was written.
        log.warning("value refused by the database", extra={"error": repr(exc), "path": request.url.path})
        return problem_response(request, Problem(422, "unstorable_value"))


# --- the factory -----------------------------------------------------------------------


def create_app(
    *,
    service: str,
    settings: CoreSettings,
    routers: Iterable[APIRouter],
    resources: Resources,
    readiness: Mapping[str, ReadinessCheck],
    messages: Mapping[str, tuple[str, str, str]] | None = None,
) -> FastAPI:
    configure_logging(service, settings.log_level)
    MESSAGES.update(messages or {})
    gateway = settings.gateway()
    if settings.is_production:
        gateway.require_for_production()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.gateway = gateway
        app.state.verifier = TokenVerifier.from_dir(
            settings.jwt_public_keys_dir, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        async with resources(app):
            # Everything imported and built at start-up lives as long as the process: move it
            # out of the collector's reach, so that a full collection walks only what requests
            # allocate. Walking the whole heap held every request of the process for 150-230 ms
            # when an organiser's upload allocated its rows (loadtests/bench_imports.py).
            gc.collect()
            gc.freeze()
            log.info("started", extra={"env": settings.app_env})
            try:
                yield
            finally:
                gc.unfreeze()  # for processes that build apps again and again (tests)

    app = FastAPI(
        title=f"Hoithi {service}",
        lifespan=lifespan,
        docs_url="/docs",
        # Metrics are Prometheus (RequestContext) and logs are ours. FastAPI's OpenTelemetry
        # hooks, left on, look up the global providers (environment reads) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_middleware(RefuseUnstorableInput)
    app.add_middleware(RequestContext, service=service)  # added last: the outermost
    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        results: dict[str, str] = {}
        for name, check in readiness.items():
            try:
                await asyncio.wait_for(check(app), timeout=2)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}"[:200]
        ok = all(v == "ok" for v in results.values())
        body = {"status": "ok" if ok else "unavailable", "service": service, "checks": results}
        return Response(orjson.dumps(body), status_code=200 if ok else 503, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app

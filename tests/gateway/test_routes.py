"""The gateway reaches every route: each route of each service's own app goes, through the
real nginx rendered from the template, to the service that serves it, with its method and
with the headers only the gateway may set.

A contract test rather than nginx locations generated from the routers: the locations stay
written by hand, in one file operators read, ordered for nginx's matching rules (regexes
before prefixes) and carrying per-route settings such as the board's micro-cache; the
official nginx image renders them with plain envsubst, without Python or the services'
code. This test makes that hand-written file unable to drift: a route added to any router
and sent elsewhere by the gateway fails it, by name.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI

from services.core.gateway import KEY_HEADER
from services.notify.app import create_app as create_notify
from services.quiz.app import create_app as create_quiz
from services.registration.app import create_app as create_registration
from services.scoring.app import create_app as create_scoring
from tests.gateway.servers import SERVICES, Gateway

APPS: dict[str, Callable[[], FastAPI]] = {
    "registration": create_registration, "quiz": create_quiz, "scoring": create_scoring, "notify": create_notify,
}
# Operators' and the framework's own endpoints, reached on the service port (or, for
# readiness, through /_health/<service>), never as an API.
NOT_ROUTED = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
SAMPLES = {"slug": "demo", "code": "LC-P01"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


def routes_of(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves. FastAPI keeps an included router as one
    entry that yields its routes on demand; walk into those (and into mounts)."""

    def walk(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                yield from walk(route.effective_route_contexts())
            elif hasattr(route, "routes"):
                yield from ((m, getattr(route, "path", "") + p) for m, p in walk(route.routes))
            else:
                for method in getattr(route, "methods", None) or ():
                    yield method, route.path

    yield from walk(app.routes)


def owned_routes() -> dict[tuple[str, str], str]:
    """{(method, path template): service} for every route the gateway must reach."""
    owners: dict[tuple[str, str], str] = {}
    for service, create_app in APPS.items():
        app = create_app()
        walked = {(m, p) for m, p in routes_of(app) if p not in NOT_ROUTED and m != "HEAD"}
        # The walk leans on how FastAPI stores routes; the published schema is the check
        # that it found them all, so a change in FastAPI cannot empty this test quietly.
        documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
        assert documented <= walked, f"{service}: routes the walk missed: {sorted(documented - walked)}"
        for key in walked:
            assert key not in owners, f"{key} is served by both {owners[key]} and {service}"
            owners[key] = service
    return owners


def sample_path(template: str) -> str:
    return PARAMETER.sub(lambda m: SAMPLES.get(m.group(1), str(uuid.uuid4())), template)


def test_the_gateway_sends_every_route_to_the_service_that_serves_it(gateway: Gateway) -> None:
    routes = owned_routes()
    # The routes of issue 11 that used to end at the wrong service or at no location at all.
    assert routes[("PUT", "/api/admin/contests/{contest_id}/collective-rules")] == "scoring"
    assert routes[("GET", "/api/admin/attempts/{attempt_id}/replay")] == "quiz"

    misrouted: list[str] = []
    with gateway.client() as client:
        for (method, template), owner in sorted(routes.items(), key=lambda r: (r[0][1], r[0][0])):
            path = sample_path(template)
            request_id = f"contract-{uuid.uuid4().hex[:12]}"
            sent_at = time.time()
            answer = client.request(
                method, path, json={"probe": True} if method in BODY_METHODS else None,
                # What a caller might try to forge: the gateway must replace every one.
                headers={KEY_HEADER: "forged", "X-Real-IP": "203.0.113.9", "X-Request-Start": "t=1",
                         "X-Request-Id": request_id},
            )
            seen = answer.json() if answer.headers.get("content-type") == "application/json" else {}
            if (seen.get("service"), seen.get("method"), seen.get("path")) != (owner, method, path):
                reached = seen.get("service") or answer.text[:80]
                misrouted.append(f"{method} {template} → {answer.status_code} {reached}, expected {owner}")
                continue
            problems = gateway_header_problems(seen["headers"], gateway.key, request_id, sent_at)
            if problems:
                misrouted.append(f"{method} {template}: {problems}")
    assert misrouted == []
    assert len(routes) >= 50  # every service's routes were found, not a handful


def test_each_readiness_path_reaches_its_own_service(gateway: Gateway) -> None:
    with gateway.client() as client:
        for service in SERVICES:
            seen = client.get(f"/_health/{service}").json()
            assert (seen["service"], seen["path"]) == (service, "/readyz")
            assert gateway_header_problems(seen["headers"], gateway.key, None, time.time()) == []


def gateway_header_problems(headers: dict[str, str], key: str, request_id: str | None, sent_at: float) -> list[str]:
    """What is wrong with the headers a service got from the gateway (nothing: [])."""
    problems = []
    if headers.get("x-gateway-key") != key:
        problems.append(f"X-Gateway-Key {headers.get('x-gateway-key')!r}")
    stamp = re.fullmatch(r"t=(\d+\.\d{3})", headers.get("x-request-start", ""))
    if not stamp or abs(float(stamp.group(1)) - sent_at) > 30:
        problems.append(f"X-Request-Start {headers.get('x-request-start')!r}")
    if headers.get("x-real-ip") != "127.0.0.1":
        problems.append(f"X-Real-IP {headers.get('x-real-ip')!r}")
    if not headers.get("x-request-id") or (request_id is not None and headers["x-request-id"] != request_id):
        problems.append(f"X-Request-Id {headers.get('x-request-id')!r}")
    return problems

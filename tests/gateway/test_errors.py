"""nginx's own errors answer problem+json in the services' shape, keep their real status,
and say when to come back; a service's own answer, errors included, passes untouched.

Each error is caused the way it happens in production (a malformed request, a crashed or
slow service, a full disk...), through the real nginx rendered from the template. The
config under test differs only where noted: shorter timeouts (to reach a 504 or a slow
client's disconnect in a second), and one location answering nginx's own 503, which in
production only limit_req/limit_conn would produce and the gateway has neither.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from services.core.problems import MESSAGES
from services.core.testing import free_port
from tests.gateway.expected import assert_security_headers
from tests.gateway.servers import (
    ANSWER_HEADER,
    SERVICE_PROBLEM_503,
    SHORT_READ_TIMEOUT,
    EchoServer,
    Gateway,
    running_gateway,
)

TEST_ONLY_LOCATIONS = """
        client_header_timeout 1s;
        client_body_timeout 1s;
        location = /_test/gateway-503 { return 503; }
"""
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance"}


@pytest.fixture(scope="module")
def failing_gateway(services: dict[str, EchoServer]) -> Iterator[Gateway]:
    """The gateway with short timeouts, and notify's address pointing at a closed port (a
    service that is down)."""
    upstreams = {name: server.address for name, server in services.items()}
    upstreams["notify"] = f"127.0.0.1:{free_port()}"
    with running_gateway(upstreams, edits=(SHORT_READ_TIMEOUT,), extra_server=TEST_ONLY_LOCATIONS) as running:
        yield running


def raw_exchange(gateway: Gateway, request: bytes, timeout_s: float = 5) -> bytes:
    """Send bytes no HTTP client library would send; read until nginx closes."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout_s) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def parse_raw(answer: bytes) -> httpx.Response:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


def assert_gateway_problem(answer: httpx.Response, status: int, code: str, *, english: bool = False) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = json.loads(answer.content)
    assert set(problem) == PROBLEM_KEYS
    assert problem["type"] == f"urn:hoithi:problem:{code}"
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["instance"].startswith("urn:hoithi:request:")
    if code in MESSAGES:  # the services' own wording for the same code
        title, vi, en = MESSAGES[code]
        assert (problem["title"], problem["detail"]) == (title, en if english else vi)
    else:
        assert problem["title"] and problem["detail"]
        assert problem["detail"].isascii() == english  # Vietnamese has diacritics
    assert answer.headers.get_list("cache-control") == ["no-store"]
    if status in (502, 503, 504):
        assert answer.headers.get_list("retry-after") == ["5"]
    else:
        assert "retry-after" not in answer.headers
    assert_security_headers(answer)


def test_an_api_address_no_service_serves(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert_gateway_problem(client.get("/api/no-such-thing"), 404, "not_found")
        english = client.get("/api/no-such-thing", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert_gateway_problem(english, 404, "not_found", english=True)
        assert_gateway_problem(client.get("/assets/missing.0000000000.js"), 404, "not_found")


def test_a_malformed_request_line(gateway: Gateway) -> None:
    # Fails before nginx has a URI or a location: error_page at server level still answers.
    answer = parse_raw(raw_exchange(gateway, b"GARBAGE\r\n\r\n"))
    assert_gateway_problem(answer, 400, "bad_request")


def test_a_request_line_too_long(gateway: Gateway) -> None:
    answer = parse_raw(raw_exchange(gateway, b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert_gateway_problem(answer, 414, "uri_too_long")


def test_headers_too_large(gateway: Gateway) -> None:
    # nginx calls it 494 and would answer a bare 400; the gateway says 431 (RFC 6585).
    answer = parse_raw(raw_exchange(gateway, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n"))
    assert_gateway_problem(answer, 431, "headers_too_large")


@pytest.mark.parametrize("path", ["/", "/index.html", "/assets/app.0123456789.js"])
def test_a_method_static_files_do_not_take(gateway: Gateway, path: str) -> None:
    with gateway.client() as client:
        answer = client.post(path, json={})
    assert_gateway_problem(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "GET, HEAD"


def test_trace_is_refused(gateway: Gateway) -> None:
    answer = parse_raw(raw_exchange(gateway, b"TRACE /api/contests HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert_gateway_problem(answer, 405, "method_not_allowed")


def test_a_body_over_the_limit(gateway: Gateway) -> None:
    with gateway.client() as client:
        answer = client.post("/api/admin/units/import", content=b"x" * (10 * 1024 * 1024 + 1))
    assert_gateway_problem(answer, 413, "payload_too_large")


def test_a_file_the_gateway_cannot_read(gateway: Gateway) -> None:
    unreadable = gateway.web_root / "assets" / f"locked.{uuid.uuid4().hex[:10]}.js"
    unreadable.write_text("export {};\n")
    unreadable.chmod(0)
    with gateway.client() as client:
        assert_gateway_problem(client.get(f"/assets/{unreadable.name}"), 403, "forbidden")


def test_a_service_that_is_down(failing_gateway: Gateway) -> None:
    with failing_gateway.client() as client:
        assert_gateway_problem(client.get("/api/admin/notifications"), 502, "bad_gateway")
        english = client.post("/api/admin/notifications/replay", json={}, headers={"Accept-Language": "en"})
        assert_gateway_problem(english, 502, "bad_gateway", english=True)


def test_a_service_that_drops_the_connection(failing_gateway: Gateway) -> None:
    with failing_gateway.client() as client:
        answer = client.post("/api/attempts/x/submit", json={}, headers={ANSWER_HEADER: "close"})
    assert_gateway_problem(answer, 502, "bad_gateway")


def test_a_service_too_slow_to_answer(failing_gateway: Gateway) -> None:
    with failing_gateway.client() as client:
        answer = client.get("/api/contests", headers={ANSWER_HEADER: "slow"})
    assert_gateway_problem(answer, 504, "gateway_timeout")


def test_the_gateways_own_503(failing_gateway: Gateway) -> None:
    with failing_gateway.client() as client:
        assert_gateway_problem(client.get("/_test/gateway-503"), 503, "unavailable")


def test_a_services_own_problem_passes_untouched(failing_gateway: Gateway) -> None:
    with failing_gateway.client() as client:
        answer = client.get("/api/rounds/r/leaderboard", headers={ANSWER_HEADER: "problem-503"})
    assert answer.status_code == 503
    assert answer.content == SERVICE_PROBLEM_503
    assert answer.headers.get_list("retry-after") == ["7"]  # the service's, not the gateway's 5
    assert "cache-control" not in answer.headers
    assert_security_headers(answer)


def test_the_gateways_own_500(services: dict[str, EchoServer]) -> None:
    # A body past client_body_buffer_size goes to a temporary file; with its folder gone
    # (a full or broken disk looks the same) nginx itself fails the request.
    with running_gateway({name: server.address for name, server in services.items()}) as gateway:
        shutil.rmtree(gateway.prefix / "client_body_temp")
        with gateway.client() as client:
            answer = client.post("/api/admin/contests/c/questions/import", content=b"x" * (256 * 1024))
            assert_gateway_problem(answer, 500, "internal")
            english = client.post("/api/admin/contests/c/questions/import", content=b"x" * (256 * 1024),
                                  headers={"Accept-Language": "en"})
            assert_gateway_problem(english, 500, "internal", english=True)


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/contests HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    b"POST /api/attempts/x/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"answ",  # body never finished
], ids=["headers", "body"])
def test_a_client_too_slow_is_disconnected_without_an_answer(failing_gateway: Gateway, request_bytes: bytes) -> None:
    # nginx answers a client timeout (408) by closing the connection, never with a page.
    started = time.monotonic()
    assert raw_exchange(failing_gateway, request_bytes, timeout_s=10) == b""
    assert time.monotonic() - started < 9

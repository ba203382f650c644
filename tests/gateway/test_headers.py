"""Security headers on every answer from the gateway, whatever kind of location made it:
a proxied API answer, the micro-cached board (a miss and a hit), a hashed asset, the entry
page (by name, as the fallback of an app route, and at /), the gateway's own health, its
own errors (tests/gateway/test_errors.py) and a service's own errors."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.expected import assert_security_headers
from tests.gateway.servers import ANSWER_HEADER, Gateway


def test_a_proxied_api_answer(gateway: Gateway) -> None:
    with gateway.client() as client:
        answer = client.get("/api/contests")
        assert answer.json()["service"] == "quiz"
        assert_security_headers(answer)
        # What the service says about caching is the service's business.
        assert "cache-control" not in answer.headers
        public = client.get("/api/me/attempts", headers={ANSWER_HEADER: "public"})
        assert public.headers.get_list("cache-control") == ["public, max-age=30"]
        assert_security_headers(public)


def test_the_cached_board_miss_and_hit(gateway: Gateway) -> None:
    board = f"/api/rounds/{uuid.uuid4()}/leaderboard"
    with gateway.client() as client:
        first = client.get(board, headers={ANSWER_HEADER: "public"})
        second = client.get(board, headers={ANSWER_HEADER: "public"})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == first.json()  # from the cache, not the service
    for answer in (first, second):
        assert_security_headers(answer)
        assert answer.headers.get_list("cache-control") == ["public, max-age=30"]


def test_a_hashed_asset(gateway: Gateway) -> None:
    with gateway.client() as client:
        answer = client.get("/assets/app.0123456789.js")
    assert answer.status_code == 200
    assert_security_headers(answer)
    assert answer.headers.get_list("cache-control") == ["public, max-age=31536000, immutable"]


@pytest.mark.parametrize("path", ["/", "/index.html", "/quan-tri/c/demo/giai-tap-the"])
def test_the_entry_page(gateway: Gateway, path: str) -> None:
    with gateway.client() as client:
        answer = client.get(path)
    assert answer.status_code == 200
    assert answer.text.startswith("<!doctype html>")
    assert_security_headers(answer)
    assert answer.headers.get_list("cache-control") == ["no-cache"]
    assert "x-cache" not in answer.headers


def test_the_gateways_own_health(gateway: Gateway) -> None:
    with gateway.client() as client:
        answer = client.get("/healthz")
    assert answer.json() == {"status": "ok"}
    assert_security_headers(answer)
    assert answer.headers.get_list("cache-control") == ["no-store"]


@pytest.mark.parametrize("forwarded", ["https", "HTTPS"])
def test_hsts_only_behind_tls(gateway: Gateway, forwarded: str) -> None:
    with gateway.client() as client:
        for path in ("/", "/api/contests", "/api/no-such-thing"):
            assert_security_headers(client.get(path, headers={"X-Forwarded-Proto": forwarded}), tls=True)
            assert_security_headers(client.get(path, headers={"X-Forwarded-Proto": "http"}), tls=False)

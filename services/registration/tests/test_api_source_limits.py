"""Per-source limits through HTTP, in-process against the real PostgreSQL and Redis:
sign-up (and its code), the contest's entry password and password resets each answer a
clear 429 once one client address has used its share of the window. The window is a Redis
TTL: a test ends it by removing the counter, never by sleeping through it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from services.core import events
from services.registration import store
from services.registration.tests.conftest import sign_up

LAB = "203.0.113.9"
ELSEWHERE = "198.51.100.1"


def person(unit_id: uuid.UUID, n: int, **overrides: Any) -> dict[str, Any]:
    return sign_up(unit_id, full_name=f"Người Thứ {n}", phone=f"09120000{n:02d}", email=None, id_number=None,
                   **overrides)


async def register(client: httpx.AsyncClient, body: dict[str, Any], address: str, **headers: str) -> httpx.Response:
    return await client.post("/api/auth/register", json=body, headers={"X-Real-IP": address, **headers})


def assert_throttled(response: httpx.Response, code: str, window_s: int) -> int:
    """A 429 problem that says how long to wait, in the header, the body and the words."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    wait = int(response.headers["retry-after"])
    assert 0 < wait <= window_s
    assert problem["retry_after"] == wait
    assert "Thử lại sau" in problem["detail"]
    return wait


async def end_windows(redis: Redis) -> None:
    """Every per-source window ends now, as its TTL would."""
    counters = [key async for key in redis.scan_iter(match="registration:limit:*")]
    assert counters, "no window to end"
    for key in counters:
        # Each ends by itself within its window (an hour for the SMS cap, CODE_REQUESTS_PER_IP_PER_HOUR).
        window_ms = 3_600_000 if key.startswith(b"registration:limit:codes:") else 600_000
        assert 0 < await redis.pttl(key) <= window_ms
    await redis.delete(*counters)


async def test_sign_ups_from_one_address_are_throttled(
    app_with: Any, pool: asyncpg.Pool, redis: Redis, demo_units: dict[str, store.Unit]
) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(SIGNUP_PER_SOURCE="3", SOURCE_WINDOW_S="600") as client:
        for n in range(3):
            assert (await register(client, person(unit_id, n), LAB)).status_code == 201
        refused = await register(client, person(unit_id, 3), LAB)
        assert_throttled(refused, "signup_throttled", 600)
        assert "đăng ký" in refused.json()["detail"]
        english = await register(client, person(unit_id, 3), LAB, **{"Accept-Language": "en"})
        assert "Try again in" in english.json()["detail"]
        # Refused before anything was written.
        assert await pool.fetchval("SELECT count(*) FROM participants") == 3
        # The sign-up code shares the sign-up's share.
        assert_throttled(await client.post("/api/auth/register/code", json={"phone": "0912000099"},
                                           headers={"X-Real-IP": LAB}), "signup_throttled", 600)
        # Another address is not affected, and the window passes.
        assert (await register(client, person(unit_id, 4), ELSEWHERE)).status_code == 201
        await end_windows(redis)
        assert (await register(client, person(unit_id, 5), LAB)).status_code == 201


async def test_wrong_entry_passwords_from_one_address_are_throttled(
    app_with: Any, pool: asyncpg.Pool, redis: Redis, demo_units: dict[str, store.Unit]
) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(ENTRY_PASSWORD="Hội thi 2026", ENTRY_PASSWORD_TRIES_PER_SOURCE="2") as client:
        # Right ones do not count: a whole class signs up from one address.
        for n in range(3):
            assert (await register(client, person(unit_id, n, entry_password="Hội thi 2026"), LAB)).status_code == 201
        for n in range(2):
            wrong = await register(client, person(unit_id, 10 + n, entry_password=f"đoán {n}"), LAB)
            assert wrong.status_code == 422
        # Now not even the right one is tried from there: the password cannot be guessed.
        refused = await register(client, person(unit_id, 20, entry_password="Hội thi 2026"), LAB)
        assert_throttled(refused, "entry_password_throttled", 600)
        assert "mật khẩu dự thi" in refused.json()["detail"]
        right = "Hội thi 2026"
        assert (await register(client, person(unit_id, 21, entry_password=right), ELSEWHERE)).status_code == 201
        await end_windows(redis)
        assert (await register(client, person(unit_id, 22, entry_password=right), LAB)).status_code == 201


async def test_password_reset_requests_from_one_address_are_throttled(
    app_with: Any, pool: asyncpg.Pool, redis: Redis, demo_units: dict[str, store.Unit]
) -> None:
    async with app_with(RESET_REQUESTS_PER_SOURCE="2") as client:
        assert (await register(client, person(demo_units["LC-P01"].id, 1), ELSEWHERE)).status_code == 201

        async def request(login: str, address: str) -> httpx.Response:
            return await client.post("/api/auth/password-reset/request", json={"login": login},
                                     headers={"X-Real-IP": address})

        # Whether the login names someone or not, the same count: the 429 tells nothing.
        assert (await request("0912000001", LAB)).status_code == 202
        assert (await request("0987654321", LAB)).status_code == 202
        assert_throttled(await request("0912000001", LAB), "reset_throttled", 600)
        assert_throttled(await request("0987654322", LAB), "reset_throttled", 600)
        assert len(await store.outbox_events(pool, events.CODE_REQUESTED)) == 1
        assert (await request("0987654321", ELSEWHERE)).status_code == 202
        await end_windows(redis)
        assert (await request("0987654321", LAB)).status_code == 202


async def test_reset_code_guesses_from_one_address_are_throttled(
    app_with: Any, pool: asyncpg.Pool, redis: Redis, demo_units: dict[str, store.Unit]
) -> None:
    async with app_with(RESET_CODE_TRIES_PER_SOURCE="2", CODE_RESEND_INTERVAL_S="0") as client:
        assert (await register(client, person(demo_units["LC-P01"].id, 1), ELSEWHERE)).status_code == 201
        await client.post("/api/auth/password-reset/request", json={"login": "0912000001"})
        code = (await store.outbox_events(pool, events.CODE_REQUESTED))[-1].data["code"]
        wrong = "000000" if code != "000000" else "111111"

        async def confirm(login: str, guess: str, address: str) -> httpx.Response:
            return await client.post("/api/auth/password-reset/confirm", headers={"X-Real-IP": address},
                                     json={"login": login, "code": guess, "new_password": "mật khẩu mới 456"})

        # Guesses at an account that does not exist count alike.
        assert (await confirm("0987654321", "123456", LAB)).status_code == 400
        assert (await confirm("0912000001", wrong, LAB)).status_code == 400
        refused = await confirm("0912000001", code, LAB)  # not even the right code, from there
        assert_throttled(refused, "reset_code_throttled", 600)
        assert (await confirm("0912000001", code, ELSEWHERE)).status_code == 204
        assert (await client.post("/api/auth/login", json={"login": "0912000001", "password": "mật khẩu mới 456"},
                                  headers={"X-Real-IP": ELSEWHERE})).status_code == 200
        # Right codes do not count against their address.
        await end_windows(redis)
        await client.post("/api/auth/password-reset/request", json={"login": "0912000001"},
                          headers={"X-Real-IP": ELSEWHERE})
        code = (await store.outbox_events(pool, events.CODE_REQUESTED))[-1].data["code"]
        assert (await confirm("0912000001", code, LAB)).status_code == 204
        assert (await confirm("0912000001", wrong, LAB)).status_code == 400
        assert (await confirm("0912000001", wrong, LAB)).status_code == 400


async def test_defaults_let_a_school_lab_sign_up_at_once(
    app_with: Any, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    """Forty machines behind one address, every pupil pressing "Đăng ký" in the same minute."""
    unit_id = demo_units["LC-THCS1"].id
    async with app_with() as client:
        for n in range(40):
            assert (await register(client, person(unit_id, n), LAB)).status_code == 201

"""Identity through HTTP, in-process against the real PostgreSQL and Redis: login
throttling and lockout, refresh tokens, password reset, sign-up codes, the contest's
entry password and required ID number."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from services.core import events
from services.core.auth import TokenVerifier
from services.registration import store
from services.registration.tests.conftest import PASSWORD, bearer, make_organiser, problem_fields, sign_up

# Small numbers so the schedule plays out in a test: from one address, an account waits
# 1 s after 3 failures and is locked after 5 (60 s); an address waits after 4 failures
# across accounts. (The doubling of the wait is shown in test_throttle.py.)
THROTTLE_ENV = {
    "LOGIN_DELAY_AFTER": "3",
    "LOGIN_LOCK_AFTER": "5",
    "LOGIN_DELAY_BASE_S": "1",
    "LOGIN_DELAY_MAX_S": "1",
    "LOGIN_LOCK_S": "60",
    "LOGIN_IP_DELAY_AFTER": "4",
    "LOGIN_IP_LOCK_AFTER": "8",
}


async def attempt(client: httpx.AsyncClient, login: str, password: str, ip: str) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"login": login, "password": password}, headers={"X-Real-IP": ip}
    )


async def register(client: httpx.AsyncClient, unit_id: uuid.UUID, **overrides: Any) -> httpx.Response:
    return await client.post("/api/auth/register", json=sign_up(unit_id, **overrides))


# --- login by ID number -----------------------------------------------------------------

async def test_login_by_id_number(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    assert (await register(client, demo_units["LC-P01"].id)).status_code == 201
    response = await client.post("/api/auth/login", json={"login": "0312 0300 4567", "password": PASSWORD})
    assert response.status_code == 200, response.text


# --- throttling and lockout -------------------------------------------------------------

async def waits_end(redis: Redis) -> None:
    """Every wait and lock in force ends now, as its Redis TTL would (no test sleeps
    through a window); the failure counts stay."""
    blocks = [key async for key in redis.scan_iter(match="registration:login:*block*")]
    if blocks:
        await redis.delete(*blocks)


async def test_one_address_is_slowed_then_locked_out_of_an_account_whatever_login(
    app_with: Any, demo_units: dict[str, store.Unit], redis: Redis
) -> None:
    async with app_with(**THROTTLE_ENV) as client:
        await register(client, demo_units["LC-P01"].id)
        attacker = "203.0.113.66"
        for _ in range(3):
            assert (await attempt(client, "0912345678", "wrong password", attacker)).status_code == 401
        slowed = await attempt(client, "an.nguyen@example.vn", PASSWORD, attacker)  # another login of it
        assert slowed.status_code == 429
        assert slowed.json()["code"] == "login_throttled"
        assert slowed.headers["retry-after"] == "1"
        assert slowed.json()["retry_after"] == 1
        assert "Thử lại sau 1 giây" in slowed.json()["detail"]

        await waits_end(redis)
        assert (await attempt(client, "031203004567", "wrong", attacker)).status_code == 401  # the 4th
        assert (await attempt(client, "0912345678", PASSWORD, attacker)).status_code == 429
        await waits_end(redis)
        assert (await attempt(client, "0912345678", "wrong", attacker)).status_code == 401  # the 5th
        locked = await attempt(client, "0912345678", PASSWORD, attacker)  # even the right password
        assert locked.status_code == 423
        assert locked.json()["code"] == "account_locked"
        assert locked.headers["retry-after"] == "60"
        assert "Tài khoản tạm thời bị khoá" in locked.json()["detail"]
        assert "Thử lại sau 60 giây" in locked.json()["detail"]
        english = await client.post(
            "/api/auth/login", json={"login": "0912345678", "password": PASSWORD},
            headers={"X-Real-IP": attacker, "Accept-Language": "en"},
        )
        assert "Try again in 60 seconds" in english.json()["detail"]

        # The lock cost the attacker, not the owner: from home, the owner gets in at once.
        assert (await attempt(client, "0912345678", PASSWORD, "198.51.100.20")).status_code == 200
        assert (await attempt(client, "0912345678", PASSWORD, attacker)).status_code == 423  # still locked


async def test_a_handful_of_attacking_addresses_lock_only_themselves(
    app_with: Any, demo_units: dict[str, store.Unit]
) -> None:
    # Locked at the 5th failure, no waits before; the across-accounts limit out of the way.
    env = {**THROTTLE_ENV, "LOGIN_DELAY_AFTER": "5", "LOGIN_IP_DELAY_AFTER": "50", "LOGIN_IP_LOCK_AFTER": "100"}
    async with app_with(**env) as client:
        await register(client, demo_units["LC-P01"].id)
        attackers = [f"203.0.113.{i}" for i in range(1, 6)]
        for address in attackers:
            for i in range(5):
                assert (await attempt(client, "0912345678", f"guess {i}", address)).status_code == 401
            assert (await attempt(client, "0912345678", PASSWORD, address)).status_code == 423
        assert (await attempt(client, "0912345678", PASSWORD, "198.51.100.20")).status_code == 200


async def test_guessing_from_many_addresses_protects_the_account(
    app_with: Any, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    async with app_with(**{**THROTTLE_ENV, "LOGIN_PROTECT_AFTER": "6"}) as client:
        await register(client, demo_units["LC-P01"].id)
        home = "198.51.100.20"
        assert (await attempt(client, "0912345678", PASSWORD, home)).status_code == 200  # signed in there before

        async def guess_from_six_addresses(first: int) -> None:
            for i in range(first, first + 6):
                assert (await attempt(client, "0912345678", f"guess {i}", f"203.0.113.{i}")).status_code == 401

        await guess_from_six_addresses(0)
        # From any address the account has not been used from, the password is not even
        # tried any more, right or wrong: guessing from many places has stopped paying.
        for password in ("guess 7", PASSWORD):
            refused = await attempt(client, "0912345678", password, "192.0.2.7")
            assert refused.status_code == 423, refused.text
            assert refused.json()["code"] == "account_protected"
            assert 0 < int(refused.headers["retry-after"]) <= 3600
            assert "đặt lại mật khẩu" in refused.json()["detail"]
        # The owner, where they signed in before, is not held up.
        assert (await attempt(client, "0912345678", PASSWORD, home)).status_code == 200

        # From a new place the owner proves who they are with a code (a password reset)...
        phone = "192.0.2.50"
        await client.post("/api/auth/password-reset/request", json={"login": "0912345678"},
                          headers={"X-Real-IP": phone})
        code = (await latest_code(pool))["code"]
        assert (await client.post("/api/auth/password-reset/confirm", headers={"X-Real-IP": phone}, json={
            "login": "0912345678", "code": code, "new_password": "mật khẩu mới 456",
        })).status_code == 204
        # ... and that place stays open to them while the guessing goes on.
        await guess_from_six_addresses(10)
        assert (await attempt(client, "0912345678", "mật khẩu mới 456", "192.0.2.99")).status_code == 423
        assert (await attempt(client, "0912345678", "mật khẩu mới 456", phone)).status_code == 200


async def test_unknown_logins_are_throttled_like_real_ones(app_with: Any, pool: asyncpg.Pool) -> None:
    async with app_with(**{**THROTTLE_ENV, "LOGIN_PROTECT_AFTER": "6"}) as client:
        for _ in range(3):
            assert (await attempt(client, "0987654321", "x" * 8, "10.0.0.1")).status_code == 401
        assert (await attempt(client, "0987654321", "x" * 8, "10.0.0.1")).status_code == 429
        for i in range(2, 5):  # six failures in all, from four addresses
            assert (await attempt(client, "0987654321", "x" * 8, f"10.0.0.{i}")).status_code == 401
        protected = await attempt(client, "0987654321", "x" * 8, "10.0.1.1")
        assert protected.status_code == 423 and protected.json()["code"] == "account_protected"


async def test_a_success_resets_the_count_of_its_address(app_with: Any, demo_units: dict[str, store.Unit]) -> None:
    # The across-accounts count of the address, which a success does not reset, out of the way.
    async with app_with(**{**THROTTLE_ENV, "LOGIN_IP_DELAY_AFTER": "50", "LOGIN_IP_LOCK_AFTER": "100"}) as client:
        await register(client, demo_units["LC-P01"].id)
        for _ in range(2):
            assert (await attempt(client, "0912345678", "wrong", "10.0.0.1")).status_code == 401
        assert (await attempt(client, "0912345678", PASSWORD, "10.0.0.1")).status_code == 200
        for _ in range(3):  # three more failures before any wait: the count started again
            assert (await attempt(client, "0912345678", "wrong", "10.0.0.1")).status_code == 401
        assert (await attempt(client, "0912345678", "wrong", "10.0.0.1")).status_code == 429


async def test_one_address_guessing_many_accounts_is_slowed(
    app_with: Any, demo_units: dict[str, store.Unit]
) -> None:
    async with app_with(**THROTTLE_ENV) as client:
        await register(client, demo_units["LC-P01"].id)
        for i in range(4):
            response = await attempt(client, f"098765432{i}", "guess-guess", "203.0.113.5")
            assert response.status_code == 401
        # The right password for a real account, from that address: still waits.
        blocked = await attempt(client, "0912345678", PASSWORD, "203.0.113.5")
        assert blocked.status_code == 429 and blocked.json()["code"] == "login_throttled"
        # From elsewhere it works.
        assert (await attempt(client, "0912345678", PASSWORD, "198.51.100.7")).status_code == 200


async def test_a_lock_ends_with_its_ttl_and_a_success_then_clears_it(
    app_with: Any, demo_units: dict[str, store.Unit], redis: Redis
) -> None:
    quick_lock = {**THROTTLE_ENV, "LOGIN_DELAY_AFTER": "2", "LOGIN_LOCK_AFTER": "2"}
    async with app_with(**quick_lock) as c:
        await register(c, demo_units["LC-P01"].id)
        assert (await attempt(c, "0912345678", "wrong", "10.0.0.1")).status_code == 401
        assert (await attempt(c, "0912345678", "wrong", "10.0.0.1")).status_code == 401
        assert (await attempt(c, "0912345678", PASSWORD, "10.0.0.1")).status_code == 423
        locks = [key async for key in redis.scan_iter(match="registration:login:*block*")]
        assert len(locks) == 1 and 59_000 < await redis.pttl(locks[0]) <= 60_000  # LOGIN_LOCK_S
        await waits_end(redis)
        assert (await attempt(c, "0912345678", PASSWORD, "10.0.0.1")).status_code == 200
        assert (await attempt(c, "0912345678", "wrong", "10.0.0.1")).status_code == 401  # counting from zero


# --- refresh tokens ---------------------------------------------------------------------

async def test_refresh_rotates_and_a_reused_token_ends_the_session(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], token_verifier: TokenVerifier
) -> None:
    await register(client, demo_units["LC-P01"].id)
    login = (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).json()
    first_refresh = login["refresh_token"]

    rotated = await client.post("/api/auth/refresh", json={"refresh_token": first_refresh})
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    assert body["refresh_token"] != first_refresh
    principal = token_verifier.verify(body["access_token"])
    assert (principal.role, principal.name, principal.unit_id) == ("participant", "Nguyễn Văn An",
                                                                   demo_units["LC-P01"].id)
    assert (await client.get("/api/me", headers=bearer(body["access_token"]))).status_code == 200

    second = await client.post("/api/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert second.status_code == 200
    # The first token, used already, comes back: someone copied it. The session ends.
    reused = await client.post("/api/auth/refresh", json={"refresh_token": first_refresh})
    assert reused.status_code == 401 and reused.json()["code"] == "refresh_token_reused"
    latest = await client.post("/api/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert latest.status_code == 401 and latest.json()["code"] == "invalid_refresh_token"

    # Another login (another device) is its own session, untouched.
    other = (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).json()
    assert (await client.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 200


async def test_logout_revokes_the_refresh_token(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    await register(client, demo_units["LC-P01"].id)
    login = (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).json()
    assert (await client.post("/api/auth/logout", json={"refresh_token": login["refresh_token"]})).status_code == 204
    assert (await client.post("/api/auth/logout", json={"refresh_token": login["refresh_token"]})).status_code == 204
    after = await client.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert after.status_code == 401 and after.json()["code"] == "invalid_refresh_token"
    garbage = await client.post("/api/auth/refresh", json={"refresh_token": "x" * 43})
    assert garbage.status_code == 401
    assert problem_fields(await client.post("/api/auth/refresh", json={})) == ["refresh_token"]


async def test_staff_sessions_refresh_too(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                          token_verifier: TokenVerifier) -> None:
    staff_id = await make_organiser(pool)
    login = (await client.post("/api/auth/login", json={"login": "btc", "password": PASSWORD})).json()
    rotated = await client.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert token_verifier.verify(rotated.json()["access_token"]).id == staff_id


# --- password reset ---------------------------------------------------------------------

async def latest_code(pool: asyncpg.Pool) -> dict[str, Any]:
    requested = await store.outbox_events(pool, events.CODE_REQUESTED)
    assert requested, "no code.requested event"
    return requested[-1].data


async def test_password_reset_by_code_from_the_outbox(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await register(client, demo_units["LC-P01"].id)
    old_session = (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).json()

    requested = await client.post("/api/auth/password-reset/request", json={"login": "+84 912 345 678"})
    assert requested.status_code == 202
    data = await latest_code(pool)
    assert (data["purpose"], data["channel"], data["recipient"], data["full_name"]) == (
        "password_reset", "sms", "0912345678", "Nguyễn Văn An"
    )
    assert len(data["code"]) == 6 and data["code"].isdigit()

    wrong = "000000" if data["code"] != "000000" else "111111"
    bad = await client.post("/api/auth/password-reset/confirm",
                            json={"login": "0912345678", "code": wrong, "new_password": "mật khẩu mới 456"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_code"
    short = await client.post("/api/auth/password-reset/confirm",
                              json={"login": "0912345678", "code": data["code"], "new_password": "short"})
    assert short.status_code == 422 and problem_fields(short) == ["new_password"]

    done = await client.post("/api/auth/password-reset/confirm",
                             json={"login": "0912345678", "code": data["code"], "new_password": "mật khẩu mới 456"})
    assert done.status_code == 204, done.text
    assert (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).status_code == 401
    assert (await client.post(
        "/api/auth/login", json={"login": "0912345678", "password": "mật khẩu mới 456"}
    )).status_code == 200
    # Sessions from before the reset are over; the code works once.
    assert (await client.post(
        "/api/auth/refresh", json={"refresh_token": old_session["refresh_token"]}
    )).status_code == 401
    again = await client.post("/api/auth/password-reset/confirm",
                              json={"login": "0912345678", "code": data["code"], "new_password": "third password"})
    assert again.status_code == 400


async def test_reset_request_never_tells_whether_the_account_exists(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await register(client, demo_units["LC-P01"].id)
    known = await client.post("/api/auth/password-reset/request", json={"login": "0912345678"})
    unknown = await client.post("/api/auth/password-reset/request", json={"login": "0987654321"})
    assert (known.status_code, unknown.status_code) == (202, 202)
    assert known.json() == unknown.json()
    assert len(await store.outbox_events(pool, events.CODE_REQUESTED)) == 1
    confirm = await client.post("/api/auth/password-reset/confirm",
                                json={"login": "0987654321", "code": "123456", "new_password": "whatever123"})
    assert confirm.status_code == 400 and confirm.json()["code"] == "invalid_code"


async def test_reset_code_by_email_and_paced(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await register(client, demo_units["LC-P01"].id)
    assert (await client.post("/api/auth/password-reset/request",
                              json={"login": "AN.NGUYEN@example.vn"})).status_code == 202
    data = await latest_code(pool)
    assert (data["channel"], data["recipient"]) == ("email", "an.nguyen@example.vn")
    # Asked again at once: same answer, but no second message (SMS and mail cost, and annoy).
    assert (await client.post("/api/auth/password-reset/request",
                              json={"login": "0912345678", "channel": "sms"})).status_code == 202
    assert len(await store.outbox_events(pool, events.CODE_REQUESTED)) == 1
    invalid = await client.post("/api/auth/password-reset/request", json={"login": "0912345678", "channel": "fax"})
    assert problem_fields(invalid) == ["channel"]


async def test_reset_unlocks_a_locked_account(app_with: Any, pool: asyncpg.Pool,
                                              demo_units: dict[str, store.Unit]) -> None:
    async with app_with(**{**THROTTLE_ENV, "LOGIN_DELAY_AFTER": "2", "LOGIN_LOCK_AFTER": "2"}) as client:
        await register(client, demo_units["LC-P01"].id)
        for _ in range(2):
            await attempt(client, "0912345678", "wrong", "10.0.0.1")
        assert (await attempt(client, "0912345678", PASSWORD, "10.0.0.1")).status_code == 423
        await client.post("/api/auth/password-reset/request", json={"login": "0912345678"},
                          headers={"X-Real-IP": "10.0.0.1"})
        code = (await latest_code(pool))["code"]
        assert (await client.post("/api/auth/password-reset/confirm", headers={"X-Real-IP": "10.0.0.1"}, json={
            "login": "031203004567", "code": code, "new_password": "mật khẩu mới 456",
        })).status_code == 204
        assert (await attempt(client, "0912345678", "mật khẩu mới 456", "10.0.0.1")).status_code == 200


# --- what a contest may ask at sign-up --------------------------------------------------

async def test_sign_up_code_by_sms(app_with: Any, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(SIGNUP_VERIFICATION="sms") as client:
        missing = await register(client, unit_id)
        assert missing.status_code == 422 and problem_fields(missing) == ["verification_code"]

        sent = await client.post("/api/auth/register/code", json={"phone": "+84 912 345 678"})
        assert sent.status_code == 202, sent.text
        assert sent.json() == {"expires_in": 600}
        data = await latest_code(pool)
        assert (data["purpose"], data["channel"], data["recipient"], data["full_name"]) == (
            "sign_up", "sms", "0912345678", None
        )
        too_soon = await client.post("/api/auth/register/code", json={"phone": "0912345678"})
        assert too_soon.status_code == 429 and int(too_soon.headers["retry-after"]) > 50

        wrong = "000000" if data["code"] != "000000" else "111111"
        refused = await register(client, unit_id, verification_code=wrong)
        assert refused.status_code == 422 and problem_fields(refused) == ["verification_code"]
        assert (await register(client, unit_id, verification_code=data["code"])).status_code == 201
        # Now the phone has an account: no code for it.
        taken = await client.post("/api/auth/register/code", json={"phone": "0912345678"})
        assert taken.status_code == 409 and taken.json()["field"] == "phone"
        assert problem_fields(await client.post("/api/auth/register/code", json={})) == ["phone"]
        assert problem_fields(await client.post("/api/auth/register/code", json={"phone": "123"})) == ["phone"]


async def test_sign_up_code_by_email_needs_an_email(
    app_with: Any, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(SIGNUP_VERIFICATION="email") as client:
        no_email = await register(client, unit_id, email=None, verification_code="123456")
        assert problem_fields(no_email) == ["email"]
        assert (await client.post("/api/auth/register/code", json={"email": "An.Nguyen@example.vn"})).status_code == 202
        data = await latest_code(pool)
        assert (data["channel"], data["recipient"]) == ("email", "an.nguyen@example.vn")
        assert (await register(client, unit_id, verification_code=data["code"])).status_code == 201


async def test_sign_up_code_when_the_contest_needs_none(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register/code", json={"phone": "0912345678"})
    assert response.status_code == 409 and response.json()["code"] == "signup_verification_off"


async def test_entry_password(app_with: Any, demo_units: dict[str, store.Unit]) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(ENTRY_PASSWORD="Hội thi 2026") as client:
        missing = await register(client, unit_id)
        assert missing.status_code == 422 and problem_fields(missing) == ["entry_password"]
        wrong = await register(client, unit_id, entry_password="hội thi 2025")
        assert problem_fields(wrong) == ["entry_password"]
        assert "không đúng" in wrong.json()["errors"][0]["message"]
        assert (await register(client, unit_id, entry_password="Hội thi 2026")).status_code == 201


async def test_required_id_number(app_with: Any, demo_units: dict[str, store.Unit]) -> None:
    unit_id = demo_units["LC-P01"].id
    async with app_with(REQUIRE_ID_NUMBER="true") as client:
        missing = await register(client, unit_id, id_number="")
        assert missing.status_code == 422 and problem_fields(missing) == ["id_number"]
        assert "căn cước" in missing.json()["errors"][0]["message"]
        assert (await register(client, unit_id)).status_code == 201


async def test_every_custom_problem_is_reported_at_once(app_with: Any, demo_units: dict[str, store.Unit]) -> None:
    async with app_with(REQUIRE_ID_NUMBER="true", ENTRY_PASSWORD="secret") as client:
        response = await register(client, uuid.uuid4(), id_number=None)
        assert sorted(problem_fields(response)) == ["entry_password", "id_number", "unit_id"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"job": "x" * 101}, "job", "Nghề nghiệp"),
        ({"entry_code": "LC P01"}, "entry_code", "Mã đơn vị"),
        ({"verification_code": "12ab56"}, "verification_code", "6 chữ số"),
    ],
)
async def test_new_sign_up_fields_are_validated(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], overrides: dict[str, str], field: str, message: str
) -> None:
    response = await register(client, demo_units["LC-P01"].id, **overrides)
    assert response.status_code == 422
    assert problem_fields(response) == [field]
    assert message in response.json()["errors"][0]["message"]


async def test_sign_up_records_job_address_and_device(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    response = await client.post(
        "/api/auth/register",
        json=sign_up(demo_units["LC-P01"].id, job="  Giáo   viên "),
        headers={"X-Real-IP": "203.0.113.44", "X-Device-Id": "b2f1c7d0-5a7e-4c11"},
    )
    assert response.status_code == 201
    row = await pool.fetchrow("SELECT job, host(signup_ip) AS ip, device_id FROM participants")
    assert dict(row) == {"job": "Giáo viên", "ip": "203.0.113.44", "device_id": "b2f1c7d0-5a7e-4c11"}
    token = (await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})).json()
    assert (await client.get("/api/me", headers=bearer(token["access_token"]))).json()["job"] == "Giáo viên"

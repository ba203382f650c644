"""Login throttling and code pacing against the real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.registration.settings import RegistrationSettings
from services.registration.throttle import CodePacing, LoginThrottle


def settings(**overrides: object) -> RegistrationSettings:
    values: dict[str, object] = {
        "login_delay_after": 3,
        "login_lock_after": 5,
        "login_delay_base_s": 0.5,
        "login_delay_max_s": 10,
        "login_lock_s": 60,
        "login_ip_delay_after": 4,
        "login_ip_lock_after": 6,
        **overrides,
    }
    return RegistrationSettings(**values)  # type: ignore[arg-type]


async def fail(throttle: LoginThrottle, account: str, address: str) -> str:
    verdict = await throttle.start_attempt(account, address)
    if verdict.allowed:
        await throttle.failed(address)
    return verdict.verdict


async def test_account_waits_after_n_failures_then_locks_after_m(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings())
    # Different addresses, so only the account counter is at work.
    assert [await fail(throttle, "participant:1", f"10.0.0.{i}") for i in range(3)] == ["ok", "ok", "ok"]
    waiting = await throttle.start_attempt("participant:1", "10.0.1.1")
    assert waiting.verdict == "wait"
    assert 0 < waiting.retry_after_ms <= 500 and waiting.retry_after_s == 1

    await asyncio.sleep(0.55)
    assert await fail(throttle, "participant:1", "10.0.1.2") == "ok"  # the 4th: now waits 1 s
    second_wait = await throttle.start_attempt("participant:1", "10.0.1.3")
    assert second_wait.verdict == "wait" and 500 < second_wait.retry_after_ms <= 1000  # growing

    await asyncio.sleep(1.05)
    assert await fail(throttle, "participant:1", "10.0.1.4") == "ok"  # the 5th: locked
    locked = await throttle.start_attempt("participant:1", "10.0.1.5")
    assert locked.verdict == "lock"
    assert 59_000 < locked.retry_after_ms <= 60_000 and locked.retry_after_s == 60

    # Other accounts are untouched.
    assert (await throttle.start_attempt("participant:2", "10.0.1.6")).allowed


async def test_a_success_resets_the_account(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings())
    for i in range(2):
        await fail(throttle, "participant:1", f"10.0.0.{i}")
    assert (await throttle.start_attempt("participant:1", "10.0.0.9")).allowed
    await throttle.succeeded("participant:1")
    # Three more failures are free again (the counter restarted).
    assert [await fail(throttle, "participant:1", f"10.0.2.{i}") for i in range(3)] == ["ok", "ok", "ok"]
    assert (await throttle.start_attempt("participant:1", "10.0.3.1")).verdict == "wait"


async def test_parallel_guesses_cannot_slip_past_the_lock(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_delay_base_s=30))
    verdicts = await asyncio.gather(*(throttle.start_attempt("participant:1", f"10.9.0.{i}") for i in range(50)))
    # Attempts are counted when they start: three go through, then the wait begins.
    assert sum(v.allowed for v in verdicts) == 3


async def test_address_counts_failures_only(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings())
    # Successes from one address (an agency behind one NAT) never trip it.
    for i in range(20):
        assert (await throttle.start_attempt(f"participant:{i}", "203.0.113.5")).allowed
        await throttle.succeeded(f"participant:{i}")
    # Failures on many different accounts do.
    assert [await fail(throttle, f"guess:{i}", "203.0.113.5") for i in range(4)] == ["ok"] * 4
    blocked = await throttle.start_attempt("guess:99", "203.0.113.5")
    assert blocked.verdict == "ip_wait"
    assert (await throttle.start_attempt("guess:99", "198.51.100.1")).allowed  # another address is fine
    await asyncio.sleep(0.55)
    assert await fail(throttle, "guess:5", "203.0.113.5") == "ok"  # 5th failure: wait doubles
    assert 500 < (await throttle.start_attempt("guess:5", "203.0.113.5")).retry_after_ms <= 1000
    await asyncio.sleep(1.05)
    assert await fail(throttle, "guess:6", "203.0.113.5") == "ok"  # 6th: locked
    assert (await throttle.start_attempt("guess:7", "203.0.113.5")).verdict == "ip_lock"


async def test_blocks_expire(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_lock_s=1, login_delay_after=1, login_lock_after=2))
    await fail(throttle, "participant:1", "10.0.0.1")
    await asyncio.sleep(0.55)
    await fail(throttle, "participant:1", "10.0.0.2")
    assert (await throttle.start_attempt("participant:1", "10.0.0.3")).verdict == "lock"
    await asyncio.sleep(1.1)
    assert (await throttle.start_attempt("participant:1", "10.0.0.4")).allowed


async def test_code_pacing(redis: Redis) -> None:
    pacing = CodePacing(redis, interval_s=60)
    assert await pacing.claim("sign_up", "sms:0912345678") == 0
    wait = await pacing.claim("sign_up", "sms:0912345678")
    assert 55 <= wait <= 60
    assert await pacing.claim("sign_up", "sms:0987654321") == 0
    assert await pacing.claim("password_reset", "sms:0912345678") == 0  # purposes are apart
    await pacing.release("sign_up", "sms:0912345678")
    assert await pacing.claim("sign_up", "sms:0912345678") == 0
    assert await CodePacing(redis, interval_s=0).claim("sign_up", "sms:0912345678") == 0


async def test_code_requests_per_address_are_capped(redis: Redis) -> None:
    pacing = CodePacing(redis, interval_s=60, per_address_per_hour=3)
    for i in range(3):
        assert await pacing.claim("sign_up", f"sms:091234567{i}", "203.0.113.1") == 0
    wait = await pacing.claim("sign_up", "sms:0912345679", "203.0.113.1")
    assert 3500 <= wait <= 3600
    assert await pacing.claim("sign_up", "sms:0912345679", "198.51.100.1") == 0  # another address

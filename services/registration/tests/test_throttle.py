"""Login throttling, per-source limits and code pacing against the real Redis. Waits and
windows are Redis TTLs: a test reads them, and ends them by removing the key, never by
sleeping."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.registration.settings import RegistrationSettings
from services.registration.throttle import CodePacing, Limit, LoginThrottle, SourceLimits


def settings(**overrides: object) -> RegistrationSettings:
    values: dict[str, object] = {
        "login_delay_after": 3,
        "login_lock_after": 5,
        "login_delay_base_s": 0.5,
        "login_delay_max_s": 10,
        "login_lock_s": 60,
        "login_ip_delay_after": 4,
        "login_ip_lock_after": 6,
        "login_protect_after": 100,
        **overrides,
    }
    return RegistrationSettings(**values)  # type: ignore[arg-type]


async def fail(throttle: LoginThrottle, account: str, source: str) -> str:
    verdict = await throttle.start_attempt(account, source)
    if verdict.allowed:
        await throttle.failed(source)
    return verdict.verdict


async def waits_end(redis: Redis) -> None:
    """Every wait and lock ends now, as its TTL would; the counts stay."""
    blocks = [key async for key in redis.scan_iter(match="registration:login:*:block")]
    if blocks:
        await redis.delete(*blocks)


async def test_one_source_waits_after_n_failures_then_is_locked_out_after_m(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_ip_delay_after=50, login_ip_lock_after=100))
    assert [await fail(throttle, "participant:1", "10.0.0.1") for _ in range(3)] == ["ok", "ok", "ok"]
    waiting = await throttle.start_attempt("participant:1", "10.0.0.1")
    assert waiting.verdict == "wait"
    assert 0 < waiting.retry_after_ms <= 500 and waiting.retry_after_s == 1

    await waits_end(redis)
    assert await fail(throttle, "participant:1", "10.0.0.1") == "ok"  # the 4th: now waits 1 s
    second_wait = await throttle.start_attempt("participant:1", "10.0.0.1")
    assert second_wait.verdict == "wait" and 500 < second_wait.retry_after_ms <= 1000  # growing

    await waits_end(redis)
    assert await fail(throttle, "participant:1", "10.0.0.1") == "ok"  # the 5th: locked out
    locked = await throttle.start_attempt("participant:1", "10.0.0.1")
    assert locked.verdict == "lock"
    assert 59_000 < locked.retry_after_ms <= 60_000 and locked.retry_after_s == 60

    # The same account from elsewhere, and other accounts from there, are untouched.
    assert (await throttle.start_attempt("participant:1", "198.51.100.7")).allowed
    assert (await throttle.start_attempt("participant:2", "10.0.0.1")).allowed


async def test_a_success_resets_its_source_only(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_ip_delay_after=50, login_ip_lock_after=100))
    for _ in range(2):
        await fail(throttle, "participant:1", "10.0.0.1")
        await fail(throttle, "participant:1", "10.0.0.2")
    assert (await throttle.start_attempt("participant:1", "10.0.0.1")).allowed
    await throttle.succeeded("participant:1", "10.0.0.1")
    # Three more failures are free there again (the count restarted)...
    assert [await fail(throttle, "participant:1", "10.0.0.1") for _ in range(3)] == ["ok", "ok", "ok"]
    assert (await throttle.start_attempt("participant:1", "10.0.0.1")).verdict == "wait"
    # ... but not where someone else kept guessing.
    assert await fail(throttle, "participant:1", "10.0.0.2") == "ok"
    assert (await throttle.start_attempt("participant:1", "10.0.0.2")).verdict == "wait"


async def test_parallel_guesses_from_one_source_cannot_slip_past_the_wait(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_delay_base_s=30))
    verdicts = await asyncio.gather(*(throttle.start_attempt("participant:1", "10.9.0.1") for _ in range(50)))
    # Attempts are counted when they start: three go through, then the wait begins.
    assert sum(v.allowed for v in verdicts) == 3


async def test_guesses_from_many_sources_are_bounded_per_account(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_protect_after=10, login_failure_window_s=3600))
    verdicts = await asyncio.gather(*(throttle.start_attempt("participant:1", f"10.9.{i}.1") for i in range(50)))
    assert sum(v.allowed for v in verdicts) == 10
    protected = [v for v in verdicts if not v.allowed]
    assert {v.verdict for v in protected} == {"protected"}
    # Until the account's window ends: fixed, from its first attempt.
    assert all(3_590_000 < v.retry_after_ms <= 3_600_000 for v in protected)
    assert 3590 < await redis.ttl("registration:login:acct:participant:1:n") <= 3600
    # Other accounts are not protected.
    assert (await throttle.start_attempt("participant:2", "10.9.0.1")).allowed


async def test_a_protected_account_opens_to_sources_it_was_used_from(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings(login_protect_after=3, login_known_address_s=86400))
    assert (await throttle.start_attempt("participant:1", "198.51.100.20")).allowed
    await throttle.succeeded("participant:1", "198.51.100.20")  # the owner, at home
    assert 86390 < await redis.ttl("registration:login:known:participant:1:198.51.100.20") <= 86400
    for i in range(3):
        assert await fail(throttle, "participant:1", f"203.0.113.{i}") == "ok"
    assert (await throttle.start_attempt("participant:1", "203.0.113.99")).verdict == "protected"
    # The owner's own success did not count towards it, and home is still open.
    assert (await throttle.start_attempt("participant:1", "198.51.100.20")).allowed
    # A password reset from a new place opens that place and forgets the guesses.
    await throttle.forget_account("participant:1", "192.0.2.50")
    assert (await throttle.start_attempt("participant:1", "203.0.113.98")).allowed
    for i in range(3):
        await fail(throttle, "participant:1", f"203.0.114.{i}")
    assert (await throttle.start_attempt("participant:1", "203.0.113.97")).verdict == "protected"
    assert (await throttle.start_attempt("participant:1", "192.0.2.50")).allowed


async def test_a_source_counts_failures_only_across_accounts(redis: Redis) -> None:
    throttle = LoginThrottle(redis, settings())
    # Successes from one address (an agency behind one NAT) never trip it.
    for i in range(20):
        assert (await throttle.start_attempt(f"participant:{i}", "203.0.113.5")).allowed
        await throttle.succeeded(f"participant:{i}", "203.0.113.5")
    # Failures on many different accounts do.
    assert [await fail(throttle, f"guess:{i}", "203.0.113.5") for i in range(4)] == ["ok"] * 4
    blocked = await throttle.start_attempt("guess:99", "203.0.113.5")
    assert blocked.verdict == "ip_wait"
    assert (await throttle.start_attempt("guess:99", "198.51.100.1")).allowed  # another address is fine
    await waits_end(redis)
    assert await fail(throttle, "guess:5", "203.0.113.5") == "ok"  # 5th failure: the wait doubles
    assert 500 < (await throttle.start_attempt("guess:5", "203.0.113.5")).retry_after_ms <= 1000
    await waits_end(redis)
    assert await fail(throttle, "guess:6", "203.0.113.5") == "ok"  # 6th: locked
    assert (await throttle.start_attempt("guess:7", "203.0.113.5")).verdict == "ip_lock"


async def test_source_limits_count_in_a_fixed_window(redis: Redis) -> None:
    limits = SourceLimits(redis, {"signup": Limit(3, 600), "reset_code": Limit(2, 60)})
    assert [await limits.take("signup", "203.0.113.1") for _ in range(3)] == [0, 0, 0]
    wait = await limits.take("signup", "203.0.113.1")
    assert 595 <= wait <= 600
    assert await limits.take("signup", "198.51.100.1") == 0  # another source
    assert await limits.take("reset_code", "203.0.113.1") == 0  # another case
    # A refund gives one back (only failures were meant to count).
    await limits.refund("signup", "203.0.113.1")
    assert await limits.take("signup", "203.0.113.1") == 0
    assert await limits.take("signup", "203.0.113.1") > 0
    # Refused requests did not move the window's end.
    assert 595_000 <= await redis.pttl("registration:limit:signup:203.0.113.1") <= 600_000
    await redis.delete("registration:limit:signup:203.0.113.1")  # the window ends
    assert await limits.take("signup", "203.0.113.1") == 0
    # A refund never goes below nothing (nor leaves a key without an end).
    await limits.refund("reset_code", "192.0.2.1")
    assert await redis.exists("registration:limit:reset_code:192.0.2.1") == 0


async def test_parallel_requests_cannot_slip_past_a_source_limit(redis: Redis) -> None:
    limits = SourceLimits(redis, {"signup": Limit(5, 600)})
    waits = await asyncio.gather(*(limits.take("signup", "203.0.113.1") for _ in range(40)))
    assert sum(1 for w in waits if w == 0) == 5


async def test_code_pacing(redis: Redis) -> None:
    pacing = CodePacing(redis, 60, SourceLimits(redis, {"codes": Limit(20, 3600)}))
    assert await pacing.claim("sign_up", "sms:0912345678", "203.0.113.1") == 0
    wait = await pacing.claim("sign_up", "sms:0912345678", "203.0.113.1")
    assert 55 <= wait <= 60
    assert await pacing.claim("sign_up", "sms:0987654321", "203.0.113.1") == 0
    assert await pacing.claim("password_reset", "sms:0912345678", "203.0.113.1") == 0  # purposes are apart
    await pacing.release("sign_up", "sms:0912345678")
    assert await pacing.claim("sign_up", "sms:0912345678", "203.0.113.1") == 0
    unpaced = CodePacing(redis, 0, SourceLimits(redis, {"codes": Limit(20, 3600)}))
    assert await unpaced.claim("sign_up", "sms:0912345678", "203.0.113.2") == 0


async def test_code_requests_per_source_are_capped(redis: Redis) -> None:
    pacing = CodePacing(redis, 60, SourceLimits(redis, {"codes": Limit(3, 3600)}))
    for i in range(3):
        assert await pacing.claim("sign_up", f"sms:091234567{i}", "203.0.113.1") == 0
    wait = await pacing.claim("sign_up", "sms:0912345679", "203.0.113.1")
    assert 3500 <= wait <= 3600
    assert await pacing.claim("sign_up", "sms:0912345679", "198.51.100.1") == 0  # another address

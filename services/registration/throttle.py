"""Login throttling and one-time-code pacing in Redis (live state that may be lost: a
Redis restart forgets failed logins, which only gives an attacker a few more guesses).

Per account, attempts are counted when they start (so a thousand parallel guesses
cannot all slip in before the first failure is recorded) and the count is cleared by a
success. Per client address, only failures count, after the fact: many people behind
one agency address sign in at the same moment, and their successes must not trip it.
The schedule (domain.login_delays_ms) is computed in Python; the scripts only apply it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

from redis.asyncio import Redis

from services.registration import domain
from services.registration.settings import RegistrationSettings

PREFIX = "registration:"

# Counts one more attempt (failure) on KEYS[c]/KEYS[b] and sets the block it has earned.
# ARGV: lock_after, lock_ms, window_s, delay_after, then the delays (ms) for
# n = delay_after .. lock_after - 1 (domain.login_delays_ms).
_COUNT = """
local function count(c, b)
  local lock_after, lock_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
  local window_s, delay_after = tonumber(ARGV[3]), tonumber(ARGV[4])
  local n = redis.call('INCR', KEYS[c])
  redis.call('EXPIRE', KEYS[c], window_s)
  if n >= lock_after then
    redis.call('SET', KEYS[b], 'lock', 'PX', lock_ms)
  elseif n >= delay_after then
    redis.call('SET', KEYS[b], 'wait', 'PX', tonumber(ARGV[5 + n - delay_after]))
  end
  return n
end
"""

# KEYS: account failures, account block, address failures, address block.
# Returns {verdict, ms}: 'ok', or the block in force ('wait'/'lock', 'ip_wait'/'ip_lock') and its ms left.
_START_ATTEMPT = _COUNT + """
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {redis.call('GET', KEYS[2]), left} end
left = redis.call('PTTL', KEYS[4])
if left > 0 then return {'ip_' .. redis.call('GET', KEYS[4]), left} end
count(1, 2)
return {'ok', 0}
"""

# KEYS: address failures, address block.
_ADDRESS_FAILED = _COUNT + """
return count(1, 2)
"""

Verdict = Literal["ok", "wait", "lock", "ip_wait", "ip_lock"]
_VERDICTS = frozenset(get_args(Verdict))


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    verdict: Verdict
    retry_after_ms: int = 0

    @property
    def allowed(self) -> bool:
        return self.verdict == "ok"

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after_ms / 1000))


@dataclass(frozen=True, slots=True)
class Schedule:
    delay_after: int
    lock_after: int
    lock_ms: int
    window_s: int
    delays_ms: tuple[int, ...]

    def argv(self) -> list[int]:
        return [self.lock_after, self.lock_ms, self.window_s, self.delay_after, *self.delays_ms]


def _schedule(delay_after: int, lock_after: int, settings: RegistrationSettings) -> Schedule:
    lock_after = max(lock_after, delay_after)  # a lock threshold below the delay one means: lock at once
    return Schedule(
        delay_after=delay_after,
        lock_after=lock_after,
        lock_ms=settings.login_lock_s * 1000,
        window_s=max(settings.login_failure_window_s, settings.login_lock_s),
        delays_ms=tuple(domain.login_delays_ms(
            delay_after=delay_after, lock_after=lock_after,
            base_s=settings.login_delay_base_s, max_s=settings.login_delay_max_s,
        )),
    )


class LoginThrottle:
    def __init__(self, redis: Redis, settings: RegistrationSettings) -> None:
        self._redis = redis
        self._account = _schedule(settings.login_delay_after, settings.login_lock_after, settings)
        self._address = _schedule(settings.login_ip_delay_after, settings.login_ip_lock_after, settings)
        self._start = redis.register_script(_START_ATTEMPT)
        self._address_failed = redis.register_script(_ADDRESS_FAILED)

    @staticmethod
    def _account_keys(account_key: str) -> list[str]:
        return [f"{PREFIX}login:acct:{account_key}:n", f"{PREFIX}login:acct:{account_key}:block"]

    @staticmethod
    def _address_keys(address: str | None) -> list[str]:
        # No usable address (never behind the gateway): one shared bucket, still bounded.
        return [f"{PREFIX}login:ip:{address or 'unknown'}:n", f"{PREFIX}login:ip:{address or 'unknown'}:block"]

    async def start_attempt(self, account_key: str, address: str | None) -> AttemptVerdict:
        """Counts the attempt against the account, or says how long to wait first."""
        raw, left = await self._start(
            keys=[*self._account_keys(account_key), *self._address_keys(address)], args=self._account.argv()
        )
        verdict = raw.decode() if isinstance(raw, bytes) else str(raw)
        if verdict not in _VERDICTS:
            raise ValueError(f"unexpected throttle verdict {verdict!r}")
        return AttemptVerdict(cast(Verdict, verdict), int(left))

    async def failed(self, address: str | None) -> None:
        """A wrong password: counts against the client address (the account already paid)."""
        await self._address_failed(keys=self._address_keys(address), args=self._address.argv())

    async def succeeded(self, account_key: str) -> None:
        await self._redis.delete(*self._account_keys(account_key))

    async def forget_account(self, account_key: str) -> None:
        """After a password reset: the owner proved who they are."""
        await self.succeeded(account_key)


class CodePacing:
    """At most one one-time code per recipient per interval, and at most so many per
    client address per hour: SMS cost money, a flood of codes is harassment, and codes
    sent to many numbers from one place is how SMS-pumping fraud bills a sender."""

    def __init__(self, redis: Redis, interval_s: int, per_address_per_hour: int = 20) -> None:
        self._redis, self._interval_s, self._per_address = redis, interval_s, per_address_per_hour

    async def claim(self, purpose: str, recipient: str, address: str | None = None) -> int:
        """0 when a code may be sent now (and the slot is taken), else seconds to wait."""
        address_key = f"{PREFIX}code:ip:{address or 'unknown'}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(address_key, 0, ex=3600, nx=True)  # the hour starts with the first request
            pipe.incr(address_key)
            pipe.ttl(address_key)
            _, sent_from_address, address_ttl = await pipe.execute()
        if sent_from_address > self._per_address:
            return max(1, int(address_ttl))
        if self._interval_s <= 0:
            return 0
        key = f"{PREFIX}code:{purpose}:{recipient}"
        if await self._redis.set(key, b"1", ex=self._interval_s, nx=True):
            return 0
        return max(1, int(await self._redis.ttl(key)))

    async def release(self, purpose: str, recipient: str) -> None:
        """The code could not be stored: let the next request try again at once."""
        await self._redis.delete(f"{PREFIX}code:{purpose}:{recipient}")

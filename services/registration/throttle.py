"""Login throttling, per-source limits and one-time-code pacing in Redis (live state that
may be lost: a Redis restart forgets failed logins, which only gives an attacker a few
more guesses).

Logins are counted per account AND source (client address; an IPv6 client by its /64),
when they start (so a thousand parallel guesses cannot all slip in before the first
failure is recorded), and a success clears its source's count: whoever guesses from one
place is slowed, then locked out of that account, while the owner elsewhere signs in.
Guessing from many places is bounded by the account's count over all sources: past
`login_protect_after` its password is tried only from sources it was used from before
(a success or a password reset there), so a botnet gets that many guesses per window
whatever its size. Per source, only failures count across accounts, after the fact:
many people behind one agency address sign in at the same moment, and their successes
must not trip it. The schedule (domain.login_delays_ms) is computed in Python; the
scripts only apply it.

Every other limit is a fixed window per source (`SourceLimits`): a counter that starts
with the first request and ends with its TTL, so tests end a window by removing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

from redis.asyncio import Redis

from services.registration import domain
from services.registration.settings import RegistrationSettings

PREFIX = "registration:"

# Counts one more attempt (failure) on KEYS[c] and sets the block it has earned on KEYS[b].
# ARGV from `base`: lock_after, lock_ms, window_s, delay_after, then the delays (ms) for
# n = delay_after .. lock_after - 1 (domain.login_delays_ms).
_COUNT = """
local function count(c, b, base)
  local lock_after, lock_ms = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local window_s, delay_after = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local n = redis.call('INCR', KEYS[c])
  redis.call('EXPIRE', KEYS[c], window_s)
  if n >= lock_after then
    redis.call('SET', KEYS[b], 'lock', 'PX', lock_ms)
  elseif n >= delay_after then
    redis.call('SET', KEYS[b], 'wait', 'PX', tonumber(ARGV[base + 4 + n - delay_after]))
  end
  return n
end
"""

# KEYS: pair (account and source) attempts, pair block, source failures, source block,
# account attempts from every source, the "signed in from this source before" mark.
# ARGV: protect_after, protect_window_s, then the pair schedule.
# Returns {verdict, ms}: 'ok', or the block in force ('wait'/'lock', 'ip_wait'/'ip_lock',
# 'protected') and its ms left.
_START_ATTEMPT = _COUNT + """
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {redis.call('GET', KEYS[2]), left} end
left = redis.call('PTTL', KEYS[4])
if left > 0 then return {'ip_' .. redis.call('GET', KEYS[4]), left} end
if tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[1]) and redis.call('EXISTS', KEYS[6]) == 0 then
  return {'protected', math.max(redis.call('PTTL', KEYS[5]), 1)}
end
count(1, 2, 3)
if redis.call('INCR', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2])) end
return {'ok', 0}
"""

# KEYS: source failures, source block. ARGV: the source schedule.
_SOURCE_FAILED = _COUNT + """
return count(1, 2, 1)
"""

# KEYS: pair attempts, pair block, account attempts, the known-source mark.
# ARGV: known_s, forget_account (1: a password reset, the account's count goes too).
_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3])
elseif tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
  redis.call('DECR', KEYS[3])
end
redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[1]))
"""

# A fixed window: KEYS[1] counts, ARGV: limit, window_ms. Returns 0 when counted, else
# the ms until the window ends (nothing counted).
_TAKE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return left
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_REFUND = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
"""

Verdict = Literal["ok", "wait", "lock", "ip_wait", "ip_lock", "protected"]
_VERDICTS = frozenset(get_args(Verdict))


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    verdict: Verdict
    retry_after_ms: int = 0

    @property
    def allowed(self) -> bool:
        return self.verdict == "ok"

    @property
    def retry_after_s(self) -> int:
        return _seconds(self.retry_after_ms)


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
    """`source` is domain.throttle_source(client address) everywhere."""

    def __init__(self, redis: Redis, settings: RegistrationSettings) -> None:
        self._pair = _schedule(settings.login_delay_after, settings.login_lock_after, settings)
        self._source = _schedule(settings.login_ip_delay_after, settings.login_ip_lock_after, settings)
        self._protect = [settings.login_protect_after, settings.login_failure_window_s]
        self._known_s = settings.login_known_address_s
        self._start = redis.register_script(_START_ATTEMPT)
        self._source_failed = redis.register_script(_SOURCE_FAILED)
        self._succeeded = redis.register_script(_SUCCEEDED)

    @staticmethod
    def _pair_keys(account_key: str, source: str) -> list[str]:
        return [f"{PREFIX}login:pair:{account_key}:{source}:n", f"{PREFIX}login:pair:{account_key}:{source}:block"]

    @staticmethod
    def _source_keys(source: str) -> list[str]:
        return [f"{PREFIX}login:ip:{source}:n", f"{PREFIX}login:ip:{source}:block"]

    @staticmethod
    def _account_keys(account_key: str, source: str) -> list[str]:
        return [f"{PREFIX}login:acct:{account_key}:n", f"{PREFIX}login:known:{account_key}:{source}"]

    async def start_attempt(self, account_key: str, source: str) -> AttemptVerdict:
        """Counts the attempt against the account from this source, or says how long to wait first."""
        raw, left = await self._start(
            keys=[*self._pair_keys(account_key, source), *self._source_keys(source),
                  *self._account_keys(account_key, source)],
            args=[*self._protect, *self._pair.argv()],
        )
        verdict = raw.decode() if isinstance(raw, bytes) else str(raw)
        if verdict not in _VERDICTS:
            raise ValueError(f"unexpected throttle verdict {verdict!r}")
        return AttemptVerdict(cast(Verdict, verdict), int(left))

    async def failed(self, source: str) -> None:
        """A wrong password: counts against the source across accounts (the pair already paid)."""
        await self._source_failed(keys=self._source_keys(source), args=self._source.argv())

    async def succeeded(self, account_key: str, source: str) -> None:
        """The right password: the source starts afresh and is known to the account."""
        await self._succeeded(
            keys=[*self._pair_keys(account_key, source), *self._account_keys(account_key, source)],
            args=[self._known_s, 0],
        )

    async def forget_account(self, account_key: str, source: str) -> None:
        """After a password reset from `source`: the owner proved who they are there, and
        guesses at the old password no longer matter. Other sources stay locked."""
        await self._succeeded(
            keys=[*self._pair_keys(account_key, source), *self._account_keys(account_key, source)],
            args=[self._known_s, 1],
        )


LimitCase = Literal["signup", "entry_password", "reset_request", "reset_code", "codes", "number_search"]


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_s: int


class SourceLimits:
    """At most `count` per source (a client address, or for "number_search" a staff
    member) per window for each case. `take` counts before the work (parallel requests
    cannot slip past), `refund` gives one back when only failures are meant to count."""

    def __init__(self, redis: Redis, limits: dict[LimitCase, Limit]) -> None:
        self._limits = limits
        self._take = redis.register_script(_TAKE)
        self._refund = redis.register_script(_REFUND)

    @classmethod
    def from_settings(cls, redis: Redis, settings: RegistrationSettings) -> SourceLimits:
        window = settings.source_window_s
        return cls(redis, {
            "signup": Limit(settings.signup_per_source, window),
            "entry_password": Limit(settings.entry_password_tries_per_source, window),
            "reset_request": Limit(settings.reset_requests_per_source, window),
            "reset_code": Limit(settings.reset_code_tries_per_source, window),
            "codes": Limit(settings.code_requests_per_ip_per_hour, 3600),
            "number_search": Limit(settings.number_searches_per_hour, 3600),  # per staff member
        })

    @staticmethod
    def _key(case: LimitCase, source: str) -> str:
        return f"{PREFIX}limit:{case}:{source}"

    async def take(self, case: LimitCase, source: str) -> int:
        """0 when one more is allowed (and counted), else seconds until the window ends."""
        limit = self._limits[case]
        left = int(await self._take(keys=[self._key(case, source)], args=[limit.count, limit.window_s * 1000]))
        return _seconds(left) if left > 0 else 0

    async def refund(self, case: LimitCase, source: str) -> None:
        await self._refund(keys=[self._key(case, source)])


class CodePacing:
    """At most one one-time code per recipient per interval, and at most so many per
    source per hour (SourceLimits' "codes"): SMS cost money, a flood of codes is
    harassment, and codes sent to many numbers from one place is how SMS-pumping fraud
    bills a sender."""

    def __init__(self, redis: Redis, interval_s: int, limits: SourceLimits) -> None:
        self._redis, self._interval_s, self._limits = redis, interval_s, limits

    async def claim(self, purpose: str, recipient: str, source: str) -> int:
        """0 when a code may be sent now (and the slot is taken), else seconds to wait."""
        if wait_s := await self._limits.take("codes", source):
            return wait_s
        if self._interval_s <= 0:
            return 0
        key = f"{PREFIX}code:{purpose}:{recipient}"
        if await self._redis.set(key, b"1", ex=self._interval_s, nx=True):
            return 0
        return max(1, int(await self._redis.ttl(key)))

    async def release(self, purpose: str, recipient: str) -> None:
        """The code could not be stored: let the next request try again at once."""
        await self._redis.delete(f"{PREFIX}code:{purpose}:{recipient}")

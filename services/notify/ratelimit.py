"""Provider rate limits shared by every notify worker: one token bucket per channel in
Redis, taken by a Lua script (atomic, so N workers together stay under the rate).

The script is domain.take_token in Lua. By default it reads the time from Redis itself
(one clock for all workers, whatever their hosts' clocks say); tests pass the time in,
which makes the limiter deterministic. If Redis is unreachable the worker falls back to
a bucket of its own (logged) and asks Redis again only after `REDIS_RETRY_AFTER_S`, so an
outage costs one failed call, not one per message: messages still go out, and a provider
that then says 429 is retried after its Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.notify import domain

log = logging.getLogger("services.notify.ratelimit")

REDIS_RETRY_AFTER_S = 5.0

# KEYS[1] bucket; ARGV rate/s, burst, now in seconds (negative: Redis's clock), ttl ms.
# Returns the wait in seconds as a string (Redis would truncate a Lua number to an integer).
TAKE_TOKEN_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return string.format('%.17g', wait)
"""


class RateLimiter:
    """`await limiter.wait_for_token("sms")` before each send; channels without a rate
    (or a rate of 0) are not limited."""

    def __init__(
        self,
        redis: Redis | None,
        rates_per_s: Mapping[str, float],
        *,
        key_prefix: str = "notify:rate:",
        burst: float = 1.0,
    ) -> None:
        self._redis = redis
        self._rates = {channel: rate for channel, rate in rates_per_s.items() if rate > 0}
        self._prefix = key_prefix
        self._burst = burst
        self._script = redis.register_script(TAKE_TOKEN_LUA) if redis is not None else None
        self._local: dict[str, domain.TokenBucket] = {}
        self._redis_failing = False
        self._redis_down_until = 0.0  # event-loop time

    def limited(self, channel: str) -> bool:
        return channel in self._rates

    def key(self, channel: str) -> str:
        return f"{self._prefix}{channel}"

    async def try_take(self, channel: str, now: float | None = None) -> float:
        """Take a token if one is there: 0.0, else the seconds until the next one.
        `now` (seconds) replaces Redis's clock — for tests."""
        rate = self._rates.get(channel)
        if rate is None:
            return 0.0
        loop_time = asyncio.get_running_loop().time()
        if self._script is not None and loop_time >= self._redis_down_until:
            try:
                # Idle long enough to be full again: the key may expire.
                ttl_ms = int(max(self._burst / rate, 1.0) * 1000) + 1000
                wait = await self._script(keys=[self.key(channel)], args=[rate, self._burst, -1 if now is None else now,
                                                                          ttl_ms])
                if self._redis_failing:
                    log.info("rate limiter back on Redis", extra={"channel": channel})
                    self._redis_failing = False
                return float(wait)
            except (RedisError, OSError) as exc:
                if not self._redis_failing:
                    log.warning("rate limiter cannot reach Redis; limiting this worker alone",
                                extra={"error": repr(exc)})
                    self._redis_failing = True
                self._redis_down_until = asyncio.get_running_loop().time() + REDIS_RETRY_AFTER_S
        clock = loop_time if now is None else now
        decision = domain.take_token(self._local.get(channel), clock, rate, self._burst)
        self._local[channel] = decision.bucket
        return decision.wait_s

    async def wait_for_token(self, channel: str) -> None:
        # Polling is the point: the bucket lives in Redis, no local event could say "refilled".
        while (wait := await self.try_take(channel)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

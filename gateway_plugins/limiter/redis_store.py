"""Redis-backed limiter: one budget shared by every gateway process.

One Lua script checks every counter a request draws on and counts it only if all have
room, atomically, so two gateways can never both spend the last unit. Timeouts are short:
a Redis that is down or slow raises :class:`LimiterUnavailable` and the fail mode decides.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway_plugins.limiter.base import (
    UNLIMITED,
    Clock,
    LimiterUnavailable,
    LimitResult,
    check_counts,
    summarize,
    token_windows,
    wall_clock,
    windows_for,
)
from hanzo_contract.principal import Limits
from hanzo_contract.redis_keys import LIMITER_PREFIX

# KEYS: counters. ARGV: cost, then limit_i, ttl_i per counter.
# Returns {0, i} when counter i (1-based) is full, else {1, count_1, ..., count_n}.
_HIT = """
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + cost > tonumber(ARGV[2 * i]) then
    return {0, i}
  end
end
local out = {1}
for i = 1, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], cost)
  if v == cost then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
  end
  out[#out + 1] = v
end
return out
"""


# KEYS: token counters. ARGV: tokens, then ttl_i per counter. Adds unconditionally.
_CHARGE = """
local tokens = tonumber(ARGV[1])
for i = 1, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], tokens)
  if v == tokens then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[i + 1]))
  end
end
return 1
"""


class RedisLimiter:
    def __init__(
        self,
        url: str,
        timeout: float = 0.25,
        prefix: str = LIMITER_PREFIX,
        *,
        clock: Clock = wall_clock,
    ) -> None:
        # the window (part of each counter's key) comes from this clock, never Redis's TIME
        self._clock = clock
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._script = self._redis.register_script(_HIT)
        self._charge = self._redis.register_script(_CHARGE)
        self._prefix = prefix

    async def hit(
        self,
        buckets: list[str],
        limits: Limits,
        cost: int = 1,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> LimitResult:
        windows = windows_for(buckets, limits, self._clock(), bucket_limits)
        if not windows:
            return UNLIMITED
        keys = [self._prefix + w.key for w in windows]
        args: list[int] = [cost]
        for w in windows:
            args += [w.limit, w.ttl]
        try:
            reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}") from None
        if int(reply[0]) == 0:
            denied = int(reply[1]) - 1
            return summarize(windows, [0] * len(windows), denied)
        return summarize(windows, [int(v) for v in reply[1:]], None)

    async def check_tokens(self, buckets: list[str], limits: Limits) -> LimitResult:
        windows = token_windows(buckets, limits, self._clock())
        if not windows:
            return UNLIMITED
        try:
            values = await self._redis.mget([self._prefix + w.key for w in windows])
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}") from None
        return check_counts(windows, [int(v or 0) for v in values])

    async def charge_tokens(self, buckets: list[str], limits: Limits, tokens: int) -> None:
        windows = token_windows(buckets, limits, self._clock())
        if not windows or tokens <= 0:
            return
        keys = [self._prefix + w.key for w in windows]
        try:
            await self._charge(keys=keys, args=[tokens, *(w.ttl for w in windows)])
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._redis.aclose()

"""Redis-backed limiter: one budget shared by every gateway process, on one Valkey or a
Valkey/Redis cluster.

One Lua script checks every counter a request draws on and counts it only if all have
room, atomically, so two gateways can never both spend the last unit. Per-minute limits are
sliding windows (``base.py``); daily and monthly quotas stay fixed calendar windows.

Cluster safety: a Lua script may touch keys of one hash slot only. Every key carries a hash
tag, the bucket's organization (``hanzo:gw:{acme}:rpm:key:acme/abc123:29012345``), and
every bucket of one principal (its key, user or application, and its organization)
belongs to one organization, so all counters of one decision are in one slot: one script
call, one round trip, atomic. The cost is that one organization's counters live on one
primary; the organization bucket forces that anyway, and organizations spread over the
slots. A caller that mixes organizations in one call still gets a correct count: one call
per slot, in order, and the counts of earlier slots handed back if a later slot denies
(not atomic across slots, so a concurrent request may see the refunded units briefly).
Token quotas are reserved and settled the same way, one script per slot (``_RESERVE``,
``_SETTLE``), with expired reservations handed back inside each script.

Timeouts are short: a Redis that is down or slow raises :class:`LimiterUnavailable` and the
route's fail mode decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway_plugins import metrics
from gateway_plugins.limiter.base import (
    DEDUP_SECONDS,
    UNLIMITED,
    Clock,
    LimiterUnavailable,
    LimitResult,
    Window,
    check_counts,
    dedup_key,
    new_reservation_id,
    sliding_retry_after,
    summarize,
    token_windows,
    wall_clock,
    windows_for,
)
from hanzo_contract.principal import Limits
from hanzo_contract.redis_keys import LIMITER_PREFIX

# KEYS: per counter i, its key (2i-1) and its previous minute's key (2i; the key itself for
# a fixed window), then, when deduplicating, the decision's dedup key (last). ARGV: cost,
# the dedup key's TTL (0: no dedup key), then limit_i, ttl_i, weight_i per counter (weight
# 0: fixed). A counter's level is floor(previous * weight) + current.
# Returns {0, i, current, previous} when counter i (1-based) has no room, else
# {1, level_1, ..., level_n} after counting, or {2, level_1, ...}: the first answer to the
# same decision (its dedup key is there), nothing counted.
_HIT = """
local cost = tonumber(ARGV[1])
local seen_ttl = tonumber(ARGV[2])
local n = math.floor(#KEYS / 2)
local seen = false
if seen_ttl > 0 then
  seen = KEYS[#KEYS]
  local first = redis.call('GET', seen)
  if first then
    local out = cjson.decode(first)
    out[1] = 2
    return out
  end
end
local carried = {}
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local weight = tonumber(ARGV[3 * i + 2])
  local previous = 0
  if weight > 0 then
    previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  carried[i] = math.floor(previous * weight)
  if current + carried[i] + cost > tonumber(ARGV[3 * i]) then
    return {0, i, current, previous}
  end
end
local out = {1}
for i = 1, n do
  local v = redis.call('INCRBY', KEYS[2 * i - 1], cost)
  if v == cost then
    redis.call('EXPIRE', KEYS[2 * i - 1], tonumber(ARGV[3 * i + 1]))
  end
  out[#out + 1] = v + carried[i]
end
if seen then
  redis.call('SET', seen, cjson.encode(out), 'NX', 'EX', seen_ttl)
end
return out
"""

# KEYS: counters of one slot. ARGV: amount, then ttl_i per counter. Adds unconditionally
# (a negative amount hands back what a denied multi-slot hit counted).
_ADD = """
local amount = tonumber(ARGV[1])
for i = 1, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], amount)
  if v == amount then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[i + 1]))
  end
end
return 1
"""

# Token reservations. Per hash slot (one organization), a sorted set of open reservations
# by expiry (``tres``) and a hash of what each holds (``tresv``: id -> {n: tokens, k:
# counter keys}). Every token script first hands back what expired reservations hold, by
# the caller's clock (ARGV[1]), a bounded number per call: a gateway that crashed between
# reserve and settle leaks nothing past the reservation's TTL. The counters a reservation
# names share the slot's hash tag, so the script touches one slot only.
_SWEEP = """
local function sweep(zkey, hkey, now)
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(expired) do
    local raw = redis.call('HGET', hkey, id)
    if raw then
      local held = cjson.decode(raw)
      for _, k in ipairs(held.k) do
        if redis.call('EXISTS', k) == 1 then
          if redis.call('DECRBY', k, held.n) < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
        end
      end
      redis.call('HDEL', hkey, id)
    end
    redis.call('ZREM', zkey, id)
  end
end
"""

# KEYS: tres, tresv, then the counters. ARGV: now. Returns the counters' values.
_CHECK_TOKENS = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2], ARGV[1])
local out = {}
for i = 3, #KEYS do out[#out + 1] = tonumber(redis.call('GET', KEYS[i]) or '0') end
return out
"""
)

# KEYS: tres, tresv, then the counters. ARGV: now, expires_at, id, tokens, keep (seconds
# the reservation set lives: the longest counter's), then limit_i, ttl_i per counter.
# Returns {0, i, value} when counter i (1-based) has no room, else {1, level_1, ...}.
_RESERVE = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2], ARGV[1])
local tokens = tonumber(ARGV[4])
local n = #KEYS - 2
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  if current + tokens > tonumber(ARGV[4 + 2 * i]) then return {0, i, current} end
end
local out, held = {1}, {}
for i = 1, n do
  local k = KEYS[i + 2]
  out[#out + 1] = redis.call('INCRBY', k, tokens)
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, tonumber(ARGV[5 + 2 * i])) end
  held[i] = k
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({n = tokens, k = held}))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return out
"""
)

# KEYS: tres, tresv, then the counters of now. ARGV: now, id ('' for none), tokens, then
# ttl_i per counter. A live reservation becomes ``tokens`` in the counters it was held in;
# otherwise the tokens are added to the counters of now (spent: unconditionally).
_SETTLE = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2], ARGV[1])
local tokens = tonumber(ARGV[3])
local raw = false
if ARGV[2] ~= '' then raw = redis.call('HGET', KEYS[2], ARGV[2]) end
if raw then
  local held = cjson.decode(raw)
  local delta = tokens - held.n
  for _, k in ipairs(held.k) do
    if redis.call('EXISTS', k) == 1 then
      if redis.call('INCRBY', k, delta) < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
    end
  end
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 1
end
if tokens > 0 then
  for i = 3, #KEYS do
    redis.call('INCRBY', KEYS[i], tokens)
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[i + 1])) end
  end
end
return 0
"""
)

#: everything the client raises when the store is down, slow or mid-failover
_STORE_ERRORS = (RedisError, RedisClusterException, OSError)


def hash_tag(bucket: str) -> str:
    """The hash tag of a bucket: its organization (``key:acme/abc`` -> ``acme``,
    ``org:acme`` -> ``acme``). Braces are replaced so a name cannot end the tag early;
    the full bucket stays in the key, so two buckets never share a counter."""
    name = bucket.split(":", 1)[-1].split("/", 1)[0]
    return name.replace("{", "(").replace("}", ")") or "-"


class RedisLimiter:
    in_process = False

    def __init__(
        self,
        url: str,
        timeout: float = 0.25,
        prefix: str = LIMITER_PREFIX,
        *,
        clock: Clock = wall_clock,
        cluster: bool = False,
    ) -> None:
        # the window (part of each counter's key) comes from this clock, never Redis's TIME
        self._clock = clock
        self._redis: Any
        if cluster:
            # a node that is down must fail this decision fast, not be retried for seconds
            self._redis = RedisCluster.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                # the cluster client refuses (MaxConnectionsError) past its pool size, where
                # a single-server pool grows: size it for a burst, like the single one
                max_connections=10_000,
                health_check_interval=0,
            )
        else:
            self._redis = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                health_check_interval=0,
            )
        self._cluster = cluster
        # concurrent first calls would each map the cluster and close the connections the
        # others are writing on: the first call maps it, the rest wait (see _connected)
        self._mapped = not cluster
        self._mapping = asyncio.Lock()
        self._script = self._redis.register_script(_HIT)
        self._add = self._redis.register_script(_ADD)
        self._check_tokens = self._redis.register_script(_CHECK_TOKENS)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._prefix = prefix

    async def _connected(self) -> None:
        """Map the cluster's slots once before the first command (and again after a
        failure reset it); a single server needs nothing."""
        if self._mapped:
            return
        async with self._mapping:
            if not self._mapped:
                await self._redis.initialize()
                self._mapped = True

    def _key(self, window_key: str, bucket: str) -> str:
        return f"{self._prefix}{{{hash_tag(bucket)}}}:{window_key}"

    def _by_slot(self, windows: list[Window]) -> list[list[int]]:
        """Window indexes grouped by hash tag, in first-seen order."""
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(hash_tag(w.bucket), []).append(i)
        return list(groups.values())

    async def hit(
        self,
        buckets: list[str],
        limits: Limits,
        cost: int = 1,
        bucket_limits: Mapping[str, Limits] | None = None,
        request_id: str | None = None,
    ) -> LimitResult:
        now = self._clock()
        windows = windows_for(buckets, limits, now, bucket_limits, sliding=True)
        if not windows:
            return UNLIMITED
        seen = dedup_key(buckets, request_id) if request_id else None
        levels = [0] * len(windows)
        done: list[list[int]] = []
        repeated = False
        try:
            await self._connected()
            for group in self._by_slot(windows):
                reply = await self._hit_slot([windows[i] for i in group], cost, seen)
                if int(reply[0]) == 0:
                    if done:
                        await self._refund([windows[i] for g in done for i in g], cost, seen)
                    denied = group[int(reply[1]) - 1]
                    w = windows[denied]
                    current, previous = int(reply[2]), int(reply[3])
                    reset = (
                        sliding_retry_after(w, now, current, previous, cost) if w.prev_key else None
                    )
                    return summarize(windows, levels, denied, reset)
                repeated = repeated or int(reply[0]) == 2
                # a repeated decision's first levels: as many, unless the principal's
                # limits changed between the two tries (then the levels shown are approximate)
                for i, level in zip(group, reply[1:], strict=False):
                    levels[i] = int(level)
                done.append(group)
        except _STORE_ERRORS as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        if repeated:
            metrics.LIMITER_DEDUPLICATED.inc()
        return summarize(windows, levels, None)

    async def _hit_slot(self, windows: list[Window], cost: int, seen: str | None) -> list[Any]:
        """One slot's counters in one script call; ``seen``: the decision's dedup key,
        kept in this slot (its hash tag) beside the counters it records."""
        keys: list[str] = []
        args: list[int | float] = [cost, DEDUP_SECONDS if seen else 0]
        for w in windows:
            key = self._key(w.key, w.bucket)
            keys += [key, self._key(w.prev_key, w.bucket) if w.prev_key else key]
            args += [w.limit, w.ttl, round(w.prev_weight, 6)]
        if seen:
            keys.append(self._key(seen, windows[0].bucket))
        return await self._script(keys=keys, args=args)

    async def _refund(self, windows: list[Window], cost: int, seen: str | None) -> None:
        """Hand back what earlier slots counted for a decision a later slot denied, and
        forget it was counted there (a retry must count it again, not find it done)."""
        for group in self._by_slot(windows):
            keys = [self._key(windows[i].key, windows[i].bucket) for i in group]
            await self._add(keys=keys, args=[-cost, *(windows[i].ttl for i in group)])
            if seen:
                await self._redis.delete(self._key(seen, windows[group[0]].bucket))

    # ------------------------------------------------------------------ token quotas
    def _reservation_keys(self, windows: list[Window]) -> list[str]:
        """The slot's reservation set and holdings, then the counters' keys."""
        bucket = windows[0].bucket
        keys = [self._key("tres", bucket), self._key("tresv", bucket)]
        return keys + [self._key(w.key, w.bucket) for w in windows]

    async def check_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> LimitResult:
        now = self._clock()
        windows = token_windows(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED
        counts = [0] * len(windows)
        try:
            await self._connected()
            for group in self._by_slot(windows):
                keys = self._reservation_keys([windows[i] for i in group])
                values = await self._check_tokens(keys=keys, args=[now])
                for i, value in zip(group, values, strict=True):
                    counts[i] = int(value)
        except _STORE_ERRORS as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        return check_counts(windows, counts)

    async def reserve_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        tokens: int,
        ttl: float,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> tuple[LimitResult, str | None]:
        """One script call per slot (one for a principal: its buckets share its
        organization's tag); a later slot that denies hands back the earlier ones'."""
        now = self._clock()
        windows = token_windows(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED, None
        rid = new_reservation_id()
        levels = [0] * len(windows)
        done: list[list[int]] = []
        try:
            await self._connected()
            for group in self._by_slot(windows):
                part = [windows[i] for i in group]
                args: list[int | float | str] = [now, now + ttl, rid, tokens]
                args.append(max(w.ttl for w in part))
                for w in part:
                    args += [w.limit, w.ttl]
                reply = await self._reserve(keys=self._reservation_keys(part), args=args)
                if int(reply[0]) == 0:
                    for earlier in done:
                        await self._settle_slot([windows[i] for i in earlier], now, rid, 0)
                    denied = group[int(reply[1]) - 1]
                    levels[denied] = int(reply[2])
                    return summarize(windows, levels, denied), None
                for i, level in zip(group, reply[1:], strict=True):
                    levels[i] = int(level)
                done.append(group)
        except _STORE_ERRORS as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        return summarize(windows, levels, None), rid

    async def settle_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        reservation: str | None,
        tokens: int,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> None:
        now = self._clock()
        windows = token_windows(buckets, limits, now, bucket_limits)
        if not windows:
            return
        try:
            await self._connected()
            for group in self._by_slot(windows):
                part = [windows[i] for i in group]
                await self._settle_slot(part, now, reservation or "", tokens)
        except _STORE_ERRORS as exc:
            raise LimiterUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def _settle_slot(
        self, windows: list[Window], now: float, reservation: str, tokens: int
    ) -> None:
        args: list[int | float | str] = [now, reservation, tokens, *(w.ttl for w in windows)]
        await self._settle(keys=self._reservation_keys(windows), args=args)

    async def aclose(self) -> None:
        await self._redis.aclose()

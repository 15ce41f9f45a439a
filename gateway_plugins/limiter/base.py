"""Windows, results and the limiter interface shared by both stores.

Daily and monthly quotas are fixed calendar windows (units per UTC day, per UTC month).
Requests per minute are a fixed UTC-minute counter in the in-process limiter, and a
sliding window in the Redis limiter (``sliding=True``): the previous minute's count,
weighted by how much of it still lies inside the last 60 seconds, plus this minute's
count. A fixed window admits twice the limit across its edge (a full minute's budget at
:59, another at :00); the weighted pair admits at most the limit in any 60 seconds, give
or take the rounding of the estimate. A request is counted only if every counter it
draws on has room, so a denied request never uses up budget.
"""

from __future__ import annotations

import calendar
import functools
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from hanzo_contract.principal import Limits

#: seconds since the epoch; windows are UTC minutes, days and months of this clock, so a
#: test hands the limiter a clock it drives instead of racing the wall clock
Clock = Callable[[], float]
wall_clock: Clock = time.time


#: how long a decision's gateway-made id is remembered beside its counters: past nginx's
#: longest wait on one plugin (its 60 s proxy timeout) before it asks the other
DEDUP_SECONDS = 120


def dedup_key(buckets: list[str], request_id: str) -> str:
    """The name a counted decision is remembered under: the credential's bucket and the id
    the gateway made, so an id counts once for that credential and no other."""
    return f"seen:{buckets[0]}:{request_id}"


class LimiterUnavailable(Exception):
    """The counter store could not be reached; the fail mode decides."""


@dataclass(slots=True)  # not frozen: built on every request, frozen init is slower
class Window:
    #: counter name, e.g. ``rpm:key:acme/abc123:29012345``
    key: str
    limit: int
    #: seconds until this window resets
    reset: int
    #: how long the store must keep the counter (window length plus slack)
    ttl: int
    code: str  # the denial code when this window is full
    #: the bucket counted (``key:acme/abc123``); the Redis store derives its hash tag here
    bucket: str = ""
    #: sliding windows only: the previous minute's counter and the share of it (0..1)
    #: still inside the last 60 seconds; ``None`` and 0 for a fixed window
    prev_key: str | None = None
    prev_weight: float = 0.0
    #: the window's length in seconds (the ``w`` of its RateLimit-Policy)
    period: int = 60

    @property
    def policy(self) -> str:
        """The policy's name in RateLimit headers: the bucket's level and the window,
        e.g. ``key-minute`` or ``org-tokens-day``; never the bucket's identity."""
        kind, _, rest = self.key.partition(":")
        return f"{rest.partition(':')[0]}-{_PERIOD_NAMES[kind]}"


_PERIOD_NAMES = {
    "rpm": "minute",
    "upd": "day",
    "upm": "month",
    "tpd": "tokens-day",
    "tpm": "tokens-month",
}


def _sf_string(value: str) -> str:
    """A structured-field string (RFC 8941): policy names are plain ASCII tokens here."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=4096)
def _policy_value(policies: tuple[tuple[str, int, int], ...]) -> str:
    """A ``RateLimit-Policy`` value, remembered: the same few for every request of a
    principal (the key is policy names, quotas and windows, never a bucket)."""
    return ", ".join(f"{_sf_string(name)};q={quota};w={window}" for name, quota, window in policies)


#: a policy's name as a structured-field string, remembered likewise
_quoted = functools.lru_cache(maxsize=4096)(_sf_string)


class LimitResult(NamedTuple):
    """What a limiter answers. A named tuple, not a frozen dataclass: one is built for
    every limited request, and a frozen dataclass's ``__init__`` (a guarded setattr per
    field) cost more than the counting itself."""

    allowed: bool
    code: str = ""
    limit: int | None = None
    remaining: int | None = None
    reset: int = 0
    #: the name of the window reported in ``limit``/``remaining``/``reset``
    policy: str = ""
    #: every window the request drew on: (policy name, quota, window seconds)
    policies: tuple[tuple[str, int, int], ...] = ()

    def headers(self) -> dict[str, str]:
        """The RateLimit headers a client paces itself by, on allow and on deny (and
        Retry-After when denied).

        ``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers
        (-08 to -11: structured-field lists, ``q``/``w`` per policy, ``r``/``t`` for the
        current one); the older ``RateLimit-Limit/-Remaining/-Reset`` stay for the gateway
        configs and clients that read them already.
        """
        if self.limit is None:
            return {}
        remaining = max(self.remaining or 0, 0)
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if self.policy:
            out["RateLimit"] = f"{_quoted(self.policy)};r={remaining};t={self.reset}"
        if self.policies:
            out["RateLimit-Policy"] = _policy_value(self.policies)
        if not self.allowed:
            out["Retry-After"] = str(max(self.reset, 1))
        return out


UNLIMITED = LimitResult(True)


def _month_end(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def _month_length(now: float) -> int:
    """Seconds in the UTC month holding ``now`` (a month quota's window)."""
    t = time.gmtime(now)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    return int(_month_end(now)) - start


def windows_for(
    buckets: list[str],
    limits: Limits,
    now: float,
    bucket_limits: Mapping[str, Limits] | None = None,
    *,
    sliding: bool = False,
) -> list[Window]:
    """The counters one request draws on, for every bucket it belongs to.

    Each bucket is counted at ``limits`` unless ``bucket_limits`` names its own (the
    organization's bucket is charged at the plan, never at one key's limits).
    ``sliding`` makes the per-minute counters sliding windows (see the module docstring).
    """
    if not bucket_limits:
        return _windows(buckets, limits, now, sliding)
    out: list[Window] = []
    for bucket in buckets:
        out += _windows([bucket], bucket_limits.get(bucket, limits), now, sliding)
    return out


def _windows(buckets: list[str], limits: Limits, now: float, sliding: bool) -> list[Window]:
    out: list[Window] = []
    rpm, upd, upm = limits.requests_per_minute, limits.units_per_day, limits.units_per_month
    if rpm:
        minute = int(now // 60)
        reset = max(int((minute + 1) * 60 - now + 0.999), 1)
        if sliding:
            weight = 1.0 - (now - minute * 60) / 60
            out += [
                Window(
                    f"rpm:{b}:{minute}",
                    rpm,
                    reset,
                    120,
                    "rate_limited",
                    b,
                    f"rpm:{b}:{minute - 1}",
                    weight,
                )
                for b in buckets
            ]
        else:
            out += [
                Window(f"rpm:{b}:{minute}", rpm, reset, 120, "rate_limited", b) for b in buckets
            ]
    if upd:
        day = int(now // 86400)
        reset = max(int((day + 1) * 86400 - now + 0.999), 1)
        ttl = 86400 + 3600
        out += [
            Window(f"upd:{b}:{day}", upd, reset, ttl, "quota_exceeded", b, period=86400)
            for b in buckets
        ]
    if upm:
        t = time.gmtime(now)
        month = t.tm_year * 100 + t.tm_mon
        reset = max(int(_month_end(now) - now + 0.999), 1)
        ttl = 32 * 86400
        length = _month_length(now)
        out += [
            Window(f"upm:{b}:{month}", upm, reset, ttl, "quota_exceeded", b, period=length)
            for b in buckets
        ]
    return out


def token_windows(
    buckets: list[str],
    limits: Limits,
    now: float,
    bucket_limits: Mapping[str, Limits] | None = None,
) -> list[Window]:
    """The token quota counters of every bucket (UTC day and month), when capped; each
    bucket at ``limits`` unless ``bucket_limits`` names its own (the organization's plan).

    A call's cost is known only after the upstream answered, so an estimate is reserved
    first (:meth:`Limiter.reserve_tokens`: it must fit in every counter) and settled to
    the reported usage afterwards (:meth:`Limiter.settle_tokens`).
    """
    out: list[Window] = []
    for bucket in buckets:
        out += _token_windows(bucket, (bucket_limits or {}).get(bucket, limits), now)
    return out


def _token_windows(bucket: str, limits: Limits, now: float) -> list[Window]:
    out: list[Window] = []
    if limits.tokens_per_day:
        day = int(now // 86400)
        reset = max(int((day + 1) * 86400 - now + 0.999), 1)
        out.append(
            Window(
                f"tpd:{bucket}:{day}",
                limits.tokens_per_day,
                reset,
                86400 + 3600,
                "token_quota",
                bucket,
                period=86400,
            )
        )
    if limits.tokens_per_month:
        t = time.gmtime(now)
        month = t.tm_year * 100 + t.tm_mon
        reset = max(int(_month_end(now) - now + 0.999), 1)
        out.append(
            Window(
                f"tpm:{bucket}:{month}",
                limits.tokens_per_month,
                reset,
                32 * 86400,
                "token_quota",
                bucket,
                period=_month_length(now),
            )
        )
    return out


#: a reservation's id: URL-safe random text (``hanzo_contract.tokens`` checks its shape)
def new_reservation_id() -> str:
    return secrets.token_urlsafe(12)


def check_counts(windows: list[Window], counts: list[int]) -> LimitResult:
    """Refuse when any token counter has reached its cap (nothing is counted here)."""
    for i, w in enumerate(windows):
        if counts[i] >= w.limit:
            return summarize(windows, counts, i)
    return summarize(windows, counts, None)


def sliding_retry_after(window: Window, now: float, current: int, previous: int, cost: int) -> int:
    """Seconds until a denied sliding window has room for ``cost`` again, if nothing else
    is counted meanwhile: its previous minute must decay, and past the minute's end this
    minute's count becomes the one that decays. An upper bound: the estimate rounds the
    previous minute's share down, which may free the unit a little sooner."""
    room = window.limit - cost
    into = now % 60
    if current <= room:  # the previous minute's share must fall to room - current
        if previous <= 0:
            return 1
        target = 1.0 - (room - current) / previous  # fraction of the minute that must pass
        return max(int(target * 60 - into + 0.999), 1)
    if current <= 0:
        return max(window.reset, 1)
    target = 1.0 - room / current  # of the next minute, once this one is the previous
    return max(int((60 - into) + target * 60 + 0.999), 1)


def summarize(
    windows: list[Window], counts: list[int], denied_at: int | None, reset: int | None = None
) -> LimitResult:
    """Turn counter values into one result: the denying window, else the tightest one."""
    if len(windows) == 1:  # the common case: one credential, one window
        w = windows[0]
        policy = w.policy
        policies: tuple[tuple[str, int, int], ...] = ((policy, w.limit, w.period),)
        if denied_at is not None:
            reset = reset if reset is not None else w.reset
            return LimitResult(False, w.code, w.limit, 0, reset, policy, policies)
        return LimitResult(True, "", w.limit, w.limit - counts[0], w.reset, policy, policies)
    policies = tuple(dict.fromkeys((w.policy, w.limit, w.period) for w in windows))
    if denied_at is not None:
        w = windows[denied_at]
        reset = reset if reset is not None else w.reset
        return LimitResult(False, w.code, w.limit, 0, reset, w.policy, policies)
    best = min(range(len(windows)), key=lambda i: windows[i].limit - counts[i])
    w = windows[best]
    return LimitResult(True, "", w.limit, w.limit - counts[best], w.reset, w.policy, policies)


class Limiter(Protocol):
    #: counts in this process's memory, so a hit never waits on I/O (a decision that meets
    #: only such waits can run in place: ``gateway_plugins.eager``)
    in_process: bool

    async def hit(
        self,
        buckets: list[str],
        limits: Limits,
        cost: int = 1,
        bucket_limits: Mapping[str, Limits] | None = None,
        request_id: str | None = None,
    ) -> LimitResult:
        """Count one request of ``cost`` units against every bucket, or deny it.

        ``bucket_limits`` charges the buckets it names at their own limits. ``request_id``
        is an id the gateway made for this request (never one a client chose): the same
        decision asked again with it (nginx retried it at the other plugin, after the first
        counted it and timed out) returns the first allowed answer and counts nothing,
        checked and recorded in the same atomic step as the count, for
        :data:`DEDUP_SECONDS`. A denial is not recorded: nothing was counted."""
        ...

    async def check_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> LimitResult:
        """Deny when a token quota of any bucket is used up (reservations included);
        counts nothing, but hands back reservations that expired."""
        ...

    async def reserve_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        tokens: int,
        ttl: float,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> tuple[LimitResult, str | None]:
        """Hold ``tokens`` in every token counter if they fit in all of them, atomically,
        for ``ttl`` seconds of this limiter's clock at most (a reservation never settled is
        handed back then); the result and the reservation's id (``None``: nothing capped,
        or denied)."""
        ...

    async def settle_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        reservation: str | None,
        tokens: int,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> None:
        """A call spent ``tokens``: a live reservation becomes exactly that (the
        difference refunded or added, in the windows it was held in); without one (none
        was made, or it expired) the tokens are added unconditionally: they are spent."""
        ...

    async def aclose(self) -> None: ...

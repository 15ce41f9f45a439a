"""Positive and negative caches in front of the sidecar, keyed by a digest, never a secret.

A hot credential costs one dict lookup. Positive entries live for
``min(sidecar's cache_ttl_seconds, positive_cache_max_seconds)``: that is the documented
bound on how long a revoked key or a removed role can still pass. Concurrent misses for
the same credential share one sidecar call.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cachetools import TTLCache

from gateway_plugins import metrics
from gateway_plugins.errors import Rejected
from hanzo_contract.principal import Principal
from hanzo_contract.verify import VerifyResponse

#: the most (audience, method, path) identities kept per principal; a key that walks many
#: paths (``/v1/memory/{id}``) signs each anyway, so the table is cleared when full
MAX_IDENTITIES = 256

#: (audience, method, path) an identity is signed for
IdentityKey = tuple[str | tuple[str, ...], str, str]


@dataclass(slots=True)
class CachedPrincipal:
    principal: Principal
    expires_at: float
    #: the identity headers (with the signed assertion, which is bound to its audience,
    #: method and path) per route a hot key calls, and when to re-sign each: signing is
    #: the costliest step of an allowed request. They live and die with this entry, so a
    #: revoked key or a changed role never keeps an identity past the cache bound. The
    #: dicts are shared by every decision that reuses them: never mutated.
    identities: dict[IdentityKey, tuple[dict[str, str], float]] = field(default_factory=dict)


def digest(secret: str) -> str:
    """What the caches are keyed by: a sha256 of the credential, never the plaintext."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _retrieved(task: asyncio.Future[CachedPrincipal]) -> None:
    """Mark a shared fetch's outcome seen, so one whose every waiter left logs no
    "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


class PrincipalCache:
    def __init__(
        self,
        name: str,
        max_ttl: float,
        negative_ttl: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._max_ttl = max_ttl
        #: every TTL (and so the revocation bound) is read on this clock; tests drive it
        self._clock = clock
        #: by digest; an entry is never served past its own ``expires_at`` (the revocation
        #: bound), and is dropped when read after it. A plain dict: a hit is one lookup and
        #: one clock call (a ``TLRUCache`` lookup, a timer context and an LRU reorder, was
        #: most of a hit's cost). Bounded: when full, the oldest entry stored goes first.
        self._pos: dict[str, CachedPrincipal] = {}
        # (code, message), not the exception: re-raising one instance grows its traceback
        self._neg: TTLCache[str, tuple[str, str]] | None = (
            TTLCache(maxsize=size, ttl=negative_ttl, timer=clock) if negative_ttl > 0 else None
        )
        self._size = size
        self._inflight: dict[str, asyncio.Future[CachedPrincipal]] = {}
        self._hit = metrics.CACHE.labels(cache=name, result="hit")
        self._miss = metrics.CACHE.labels(cache=name, result="miss")
        self._neg_hit = metrics.CACHE.labels(cache=name, result="negative_hit")

    async def get(
        self, key: str, fetch: Callable[[], Awaitable[VerifyResponse]]
    ) -> CachedPrincipal:
        """The cached principal for ``key`` (a digest), fetching once on a miss.

        Raises :class:`Rejected` (cached briefly) or ``Unavailable`` (never cached).
        """
        found = self._pos.get(key)
        if found is not None:
            if self._clock() < found.expires_at:
                self._hit.inc()
                return found
            del self._pos[key]
        if self._neg is not None and (rejected := self._neg.get(key)) is not None:
            self._neg_hit.inc()
            raise Rejected(*rejected)
        self._miss.inc()
        pending = self._inflight.get(key)
        if pending is None:
            # its own task: a requester that goes away does not cancel the call the others
            # share, and the caller's first step never enters the HTTP client's cancel
            # scopes (a decision may start outside any task: ``gateway_plugins.eager``)
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            pending.add_done_callback(_retrieved)
            self._inflight[key] = pending
        return await asyncio.shield(pending)

    async def _fetch(
        self, key: str, fetch: Callable[[], Awaitable[VerifyResponse]]
    ) -> CachedPrincipal:
        try:
            # the TTL runs from the question, not the answer: a revocation the sidecar saw
            # after it answered is then served at most the TTL, not the TTL and a round trip
            asked_at = self._clock()
            answer = await fetch()
            ttl = min(answer.cache_ttl_seconds, self._max_ttl)
            entry = CachedPrincipal(answer.principal, asked_at + ttl)
            if ttl > 0:
                self._store(key, entry)
            return entry
        except Rejected as exc:
            if self._neg is not None:
                self._neg[key] = (exc.code, exc.message)
            raise
        finally:
            del self._inflight[key]

    def _store(self, key: str, entry: CachedPrincipal) -> None:
        self._pos.pop(key, None)  # stored again: the newest
        while len(self._pos) >= self._size:
            del self._pos[next(iter(self._pos))]
        self._pos[key] = entry

    def clear(self) -> None:
        self._pos.clear()
        if self._neg is not None:
            self._neg.clear()

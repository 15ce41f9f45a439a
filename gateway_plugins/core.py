"""The decision core: credential -> principal -> permission -> limits -> identity.

Adapters (forward-auth HTTP, Kong) build an :class:`AuthRequest`, await
:meth:`DecisionCore.decide` and render the :class:`Decision`. Every dependency is injected
so the core is tested with real stores and named fakes alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway_plugins import metrics
from gateway_plugins.audit import DenialReporter
from gateway_plugins.cache.principals import (
    MAX_IDENTITIES,
    CachedPrincipal,
    PrincipalCache,
    digest,
)
from gateway_plugins.decision import Decision, allow, deny
from gateway_plugins.errors import CredentialRefused, InvalidToken, JwksUnavailable, Unavailable
from gateway_plugins.jwt.verifier import JwtVerifier
from gateway_plugins.limiter import Limiter, LimiterUnavailable, LimitResult
from gateway_plugins.limiter.base import UNLIMITED
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.request import AuthRequest, extract_credential
from gateway_plugins.routes import RouteMatch, RouteTable
from gateway_plugins.sidecar_client import KeySource, PrincipalResolver
from gateway_plugins.usage import UsageReporter
from hanzo_contract.assertion import AssertionSigner
from hanzo_contract.headers import IDENTITY_HEADERS, identity_header_values
from hanzo_contract.principal import Limits, Principal, PrincipalKind
from hanzo_contract.tokens import TokenCharge, TokenReservation, TokenReserved

log = logging.getLogger(__name__)

#: identity headers for a public route: all present and empty, so whatever the client
#: sent under those names is overwritten with nothing
ANONYMOUS_HEADERS: dict[str, str] = dict.fromkeys(IDENTITY_HEADERS, "")


class DecisionCore:
    def __init__(
        self,
        *,
        routes: RouteTable,
        keys: KeySource,
        limiter: Limiter,
        signer: AssertionSigner,
        assertion_ttl: int,
        resolver: PrincipalResolver | None = None,
        jwt_verifier: JwtVerifier | None = None,
        reporter: DenialReporter | None = None,
        usage: UsageReporter | None = None,
        fail_open: bool = True,
        fail_mode: str | None = None,
        local_limiter: Limiter | None = None,
        local_share: float = 1.0,
        limit_levels: tuple[str, ...] = ("credential",),
        token_reservation_seconds: float = 900.0,
        positive_cache_max: float = 5.0,
        negative_cache: float = 1.0,
        cache_size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` times the credential caches and assertion re-signing (after half of
        ``assertion_ttl``, the signer's lifetime); the limiter and the JWT verifier are
        handed their own wall clocks.

        ``fail_mode`` (``open``, ``closed``, ``local``; default from ``fail_open``) is what
        a limit does when the limiter store is down, for routes that name none;
        ``local_limiter`` counts ``local`` routes meanwhile, at ``local_share`` of each
        limit."""
        self.routes = routes
        self._keys = keys
        self._resolver = resolver
        self._jwt = jwt_verifier
        self._limiter = limiter
        #: whether :meth:`decide` may run in place, outside any task (``eager.start``):
        #: the sidecar and JWKS calls it may wait on start their own tasks; a shared
        #: limiter's client (Redis) needs the task it runs in
        self.runs_in_place: bool = getattr(limiter, "in_process", False)
        self._signer = signer
        self._assertion_ttl = assertion_ttl
        self._reporter = reporter
        self._usage = usage
        self._fail_mode = fail_mode or ("open" if fail_open else "closed")
        self._local = local_limiter or MemoryLimiter(None)
        self._local_share = local_share
        self._levels = limit_levels
        self._reservation_ttl = token_reservation_seconds
        self._clock = clock
        self.key_cache = PrincipalCache(
            "key", positive_cache_max, negative_cache, cache_size, clock
        )
        self.jwt_cache = PrincipalCache(
            "jwt", positive_cache_max, negative_cache, cache_size, clock
        )
        self._outcomes: dict[tuple[str, int], Any] = {}
        #: id(principal) -> (principal, buckets, shared limits, limited at all): the same
        #: for every request of a cached principal, so worked out once (see ``_plan``)
        self._plans: dict[int, tuple[Principal, list[str], dict[str, Limits], bool]] = {}
        self._plans_size = cache_size

    async def decide(self, request: AuthRequest) -> Decision:
        started = time.perf_counter()
        decision = await self._decide(request)
        metrics.LATENCY.observe(time.perf_counter() - started)
        label = (decision.code, decision.status)
        counter = self._outcomes.get(label)
        if counter is None:
            counter = self._outcomes[label] = metrics.DECISIONS.labels(
                outcome=decision.code, status=str(decision.status)
            )
        counter.inc()
        if not decision.allowed:
            if self._reporter is not None:
                self._report(request, decision)
        elif self._usage is not None and decision.principal is not None:
            self._usage.count(decision.principal)
        return decision

    async def _decide(self, request: AuthRequest) -> Decision:
        if request.path_is_ambiguous():
            return deny(400, "invalid_path", "path has dot segments or encoded separators")
        route = self.routes.match(request.method.upper(), request.path)
        decision = await self._judge(request, route)
        if route is not None:
            decision.route = route.pattern
        return decision

    async def _judge(self, request: AuthRequest, route: RouteMatch | None) -> Decision:
        if route is not None and route.public:
            return allow(ANONYMOUS_HEADERS, None, "allow_public")
        credential = extract_credential(request.headers)
        if credential is None:
            return deny(401, "missing_credential", "an API key or bearer token is required")
        try:
            if credential.kind == "api_key":
                entry = await self.key_cache.get(
                    digest(credential.value), lambda: self._keys.verify(credential.value)
                )
            else:
                entry = await self._from_jwt(credential.value)
        except CredentialRefused as exc:
            return deny(401, exc.code, exc.message)
        except (Unavailable, JwksUnavailable) as exc:
            log.warning("credential check unavailable: %s", exc)
            return deny(503, "auth_unavailable", "identity service unavailable, retry later")
        principal = entry.principal
        if route is None:
            decision = deny(403, "route_not_allowed", "no such route on this gateway")
            decision.principal = principal
            return decision
        if not route.permits(principal):
            decision = deny(403, "forbidden", f"permission {route.permission!r} required")
            decision.principal = principal
            return decision
        limited = await self._limit(principal, route, request.decision_id)
        if not limited.allowed:
            if limited.code == "limiter_unavailable":
                return deny(503, "limiter_unavailable", "rate limiter unavailable, retry later")
            message = "rate limit exceeded" if limited.code == "rate_limited" else "quota exceeded"
            decision = deny(429, limited.code, message, limited.headers())
            decision.principal = principal
            return decision
        if route.tokens:
            spent = await self._check_tokens(principal, route)
            if not spent.allowed:
                if spent.code == "limiter_unavailable":
                    return deny(503, "limiter_unavailable", "rate limiter unavailable, retry later")
                message = "token quota exhausted until the reset time"
                decision = deny(429, "token_quota_exceeded", message, spent.headers())
                decision.principal = principal
                return decision
        identity = self._identity(entry, route.audience, request.method, request.path)
        # the client paces itself by these on every allowed answer, not only on a 429
        return allow(identity, principal, "allow", limited.headers())

    def _identity(
        self, entry: CachedPrincipal, audience: str | tuple[str, ...], method: str, path: str
    ) -> dict[str, str]:
        """The identity headers for this principal on this route, signed once and reused
        until half the assertion's life has passed (so an upstream always gets at least
        half of it): a hot key on one route costs a dict lookup, not an Ed25519 signature."""
        key = (audience, method, path)
        now = self._clock()
        found = entry.identities.get(key)
        if found is not None and now < found[1]:
            return found[0]
        assertion = self._signer.sign(entry.principal, audience=audience, method=method, path=path)
        headers = identity_header_values(entry.principal, assertion)
        if len(entry.identities) >= MAX_IDENTITIES:
            entry.identities.clear()
        entry.identities[key] = (headers, now + self._assertion_ttl / 2)
        return headers

    async def _from_jwt(self, token: str) -> CachedPrincipal:
        if self._jwt is None or self._resolver is None:
            raise InvalidToken("invalid_token", "bearer tokens are not accepted here")
        verified = await self._jwt.verify(token)
        req = verified.resolve
        key = f"{req.kind.value}:{req.organization}/{req.name}:{req.client_id}"
        resolver = self._resolver
        return await self.jwt_cache.get(key, lambda: resolver.resolve(req))

    def buckets(self, principal: Principal) -> list[str]:
        out = []
        if "credential" in self._levels:
            if principal.key_id:
                out.append(f"key:{principal.organization}/{principal.key_id}")
            elif principal.kind is PrincipalKind.APPLICATION:
                out.append(f"app:{principal.subject}")
            else:
                out.append(f"user:{principal.subject}")
        if "organization" in self._levels:
            out.append(f"org:{principal.organization}")
        return out

    def _mode(self, route: RouteMatch) -> str:
        return route.on_limiter_down or self._fail_mode

    def _plan(self, principal: Principal) -> tuple[list[str], dict[str, Limits], bool]:
        """The buckets a principal's requests count in, the ones charged at their own
        limits (the organization's, at its plan, never at one key's limits), and whether
        any limit applies. A principal is immutable and a cached one is the same object
        on every request, so this is remembered by identity (the principal is kept, so
        its id is not reused); bounded: cleared when full."""
        found = self._plans.get(id(principal))
        if found is not None and found[0] is principal:
            return found[1], found[2], found[3]
        buckets = self.buckets(principal)
        shared = {b: principal.org_limits for b in buckets if b.startswith("org:")}
        limited = any(
            lim.requests_per_minute or lim.units_per_day or lim.units_per_month
            for lim in (principal.limits, *shared.values())
        )
        if len(self._plans) >= self._plans_size:
            self._plans.clear()
        self._plans[id(principal)] = (principal, buckets, shared, limited)
        return buckets, shared, limited

    async def _limit(
        self, principal: Principal, route: RouteMatch, decision_id: str | None = None
    ) -> LimitResult:
        limits = principal.limits
        buckets, shared, limited = self._plan(principal)
        if not limited:
            return UNLIMITED
        try:
            return await self._limiter.hit(
                buckets, limits, bucket_limits=shared, request_id=decision_id
            )
        except LimiterUnavailable as exc:
            mode = self._mode(route)
            metrics.LIMITER_ERRORS.labels(fail_mode=mode).inc()
            log.warning("limiter unavailable (%s), failing %s", exc, mode)
            if mode == "open":
                return LimitResult(True)
            if mode == "local":
                share = {b: _share(lim, self._local_share) for b, lim in shared.items()}
                return await self._local.hit(
                    buckets,
                    _share(limits, self._local_share),
                    bucket_limits=share,
                    request_id=decision_id,
                )
            return LimitResult(False, "limiter_unavailable")

    def _token_buckets(self, principal: Principal) -> tuple[list[str], dict[str, Limits]]:
        """The buckets a call's tokens are counted in, and the ones charged at their own
        limits: the organization's, at its plan (never at one key's limits)."""
        buckets = self.buckets(principal)
        return buckets, {b: principal.org_limits for b in buckets if b.startswith("org:")}

    @staticmethod
    def _token_capped(principal: Principal, shared: dict[str, Limits]) -> bool:
        levels = (principal.limits, *shared.values())
        return any(lim.tokens_per_day or lim.tokens_per_month for lim in levels)

    async def _check_tokens(self, principal: Principal, route: RouteMatch) -> LimitResult:
        buckets, shared = self._token_buckets(principal)
        if not self._token_capped(principal, shared):
            return LimitResult(True)
        try:
            return await self._limiter.check_tokens(buckets, principal.limits, shared)
        except LimiterUnavailable as exc:
            mode = self._mode(route)
            metrics.LIMITER_ERRORS.labels(fail_mode=mode).inc()
            log.warning("limiter unavailable (%s) for a token check, failing %s", exc, mode)
            # token counts live in the store only: a local fallback cannot know them, so
            # ``local`` lets the call through (its request limits were counted locally)
            if mode == "closed":
                return LimitResult(False, "limiter_unavailable")
            return LimitResult(True)

    async def reserve(self, request: TokenReservation) -> tuple[LimitResult, TokenReserved]:
        """Hold a call's estimated tokens before its upstream is called: the call runs only
        if the estimate fits in every token quota of the principal (day and month, its
        credential's and its organization's), so a quota of N stops the first call that
        would exceed it. At least one token is held: an exhausted quota admits nothing.

        A store that is down follows the default fail mode (``closed``: denied with code
        ``limiter_unavailable``; otherwise admitted with nothing held, as the token check
        of the decision does)."""
        principal = request.principal
        buckets, shared = self._token_buckets(principal)
        if not self._token_capped(principal, shared):
            return LimitResult(True), TokenReserved()
        tokens = max(request.tokens, 1)
        try:
            result, reservation = await self._limiter.reserve_tokens(
                buckets, principal.limits, tokens, self._reservation_ttl, shared
            )
        except LimiterUnavailable as exc:
            metrics.LIMITER_ERRORS.labels(fail_mode=self._fail_mode).inc()
            log.warning("limiter unavailable (%s) for a token reservation", exc)
            if self._fail_mode == "closed":
                return LimitResult(False, "limiter_unavailable"), TokenReserved()
            return LimitResult(True), TokenReserved()
        if reservation is None:
            return result, TokenReserved()
        return result, TokenReserved(reservation=reservation, tokens=tokens)

    async def charge(self, charge: TokenCharge) -> None:
        """Tokens a call spent (reported by the inference gateway after the upstream's
        ``usage``): its reservation settled to them (or, with none, the tokens added to the
        principal's token quotas), and the usage counted per model."""
        principal = charge.principal
        released = charge.reservation is not None and charge.total == 0
        if self._usage is not None and not released:  # a call that produced nothing
            self._usage.count_tokens(principal, charge)
        buckets, shared = self._token_buckets(principal)
        if self._token_capped(principal, shared):
            await self._limiter.settle_tokens(
                buckets, principal.limits, charge.reservation, charge.total, shared
            )

    def _report(self, request: AuthRequest, decision: Decision) -> None:
        assert self._reporter is not None
        p = decision.principal
        self._reporter.report(
            {
                "status": decision.status,
                "reason": decision.code,
                "method": request.method[:16],
                "path": request.path[:1024],
                "organization": p.organization if p else None,
                "subject": p.subject if p else None,
                "key_id": p.key_id if p else None,
                "client_ip": request.client_ip,
                "gateway": "hanzo-gateway",
            }
        )

    async def readiness(self) -> dict[str, str]:
        """Each dependency that can say so (the sidecar): ``ok`` or why not."""
        checks: dict[str, str] = {}
        for name, client in (("sidecar", self._keys),):
            ready = getattr(client, "ready", None)
            if ready is not None:
                checks[name] = await ready()
        return checks

    async def aclose(self) -> None:
        for part in (self._reporter, self._usage, self._limiter, self._local):
            if part is not None:
                await part.aclose()
        for client in {id(c): c for c in (self._keys, self._resolver, self._jwt)}.values():
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()


def _share(limits: Limits, share: float) -> Limits:
    """``limits`` scaled to ``share`` (at least 1 where a limit is set): what one process
    may admit on its own while the shared store is down."""
    if share >= 1.0:
        return limits

    def scaled(value: int | None) -> int | None:
        return max(int(value * share), 1) if value else value

    return limits.model_copy(
        update={
            "requests_per_minute": scaled(limits.requests_per_minute),
            "units_per_day": scaled(limits.units_per_day),
            "units_per_month": scaled(limits.units_per_month),
        }
    )

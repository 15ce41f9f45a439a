"""Casdoor JWTs: RS256 signature against Casdoor's JWKS, then issuer, audience, expiry.

The JWKS is fetched once and kept; a token with an unknown ``kid`` triggers a refetch, at
most once per ``refresh_interval`` so a flood of forged kids cannot hammer Casdoor.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cachetools import TLRUCache

from gateway_plugins.errors import InvalidToken, JwksUnavailable
from hanzo_contract.principal import PrincipalKind
from hanzo_contract.verify import ResolveRequest

__all__ = ["InvalidToken", "JwksCache", "JwksUnavailable", "JwtVerifier", "VerifiedToken"]

#: signature and the claims PyJWT checks without a clock; expiry, not-before, issued-at
#: and issuer are checked in :func:`_check_claims` on the verifier's own clock
_DECODE_OPTIONS: Any = {
    "require": ["exp", "iss", "aud", "sub"],
    "verify_aud": False,  # shared applications need the owner claim: see _audience_ok
    "verify_iss": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}

_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: dict[str, Any]
    #: what to ask the sidecar to learn this caller's scopes
    resolve: ResolveRequest


class JwksCache:
    def __init__(self, jwks_url: str, refresh_interval: float, http: httpx.AsyncClient) -> None:
        self._url = jwks_url
        self._interval = refresh_interval
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        found = self._lookup(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._lookup(kid)
            if found is None and time.monotonic() - self._fetched_at >= self._interval:
                await self._refresh()
                found = self._lookup(kid)
        if found is None:
            raise InvalidToken("invalid_token", "token signed with an unknown key")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Fetch the keys; a fetch that fails counts as one (no other for ``interval``), one
        cut off by its caller (cancelled) does not, so the next request tries at once."""
        previous, self._fetched_at = self._fetched_at, time.monotonic()
        try:
            response = await self._http.get(self._url)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise JwksUnavailable(f"cannot fetch JWKS: {type(exc).__name__}") from None
        except asyncio.CancelledError:
            self._fetched_at = previous
            raise
        self._keys = {k.key_id: k for k in keys if k.key_id}


class JwtVerifier:
    def __init__(
        self,
        casdoor_url: str,
        issuer: str,
        audiences: list[str],
        *,
        shared_audiences: list[str] | None = None,
        org_audiences: list[str] | None = None,
        leeway: int = 5,
        refresh_interval: float = 10.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: seconds since the epoch, for ``exp``/``nbf``/``iat``; tests hand one they drive
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=timeout)
        self._jwks = JwksCache(
            casdoor_url.rstrip("/") + "/.well-known/jwks", refresh_interval, self._http
        )
        self._issuer = issuer
        self._audiences = frozenset(audiences)
        self._shared = tuple(shared_audiences or ())
        self._per_org = tuple(org_audiences or ())
        self._leeway = leeway
        # verified tokens, by digest, until their own expiry (at most a minute): a JWT is
        # not revocable before ``exp``, and this spares the RSA check on every request
        self._verified: TLRUCache[str, tuple[VerifiedToken, float]] = TLRUCache(
            maxsize=10_000, ttu=lambda _k, v, _now: v[1], timer=clock
        )

    async def verify(self, token: str) -> VerifiedToken:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._verified.get(digest)
        if hit is not None:
            return hit[0]
        # its own task: fetching the issuer's keys enters the HTTP client's cancel scopes,
        # which a decision started outside any task must not (``gateway_plugins.eager``)
        verified = await asyncio.ensure_future(self._verify(token))
        exp = float(verified.claims["exp"])
        self._verified[digest] = (verified, min(exp, self._clock() + 60))
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("invalid_token", "malformed token") from None
        if header.get("alg") not in _ALGORITHMS:
            raise InvalidToken("invalid_token", "unsupported token algorithm")
        key = await self._jwks.key(header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=[header["alg"]], options=_DECODE_OPTIONS)
            _check_claims(claims, self._clock(), self._leeway, self._issuer)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired_token", "token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("invalid_token", "token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("invalid_token", "token is from another issuer") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid_token", "token signature or claims invalid") from None
        if not self._audience_ok(claims):
            raise InvalidToken("invalid_token", "token is not for this audience")
        return VerifiedToken(claims, _resolve_request(claims))

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        """An accepted client id, or one bound to the token's own organization: ``<shared
        client id>-org-<owner>`` (Casdoor's audience for users signing in through a shared
        app) or a per-tenant template filled with ``owner``."""
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else [a for a in aud or () if isinstance(a, str)]
        owner = claims.get("owner")
        own: set[str] = set()
        if isinstance(owner, str) and owner:
            own = {f"{s}-org-{owner}" for s in self._shared}
            own |= {t.replace("{organization}", owner) for t in self._per_org}
        return any(a in self._audiences or a in own for a in auds)

    async def aclose(self) -> None:
        await self._http.aclose()


def _check_claims(claims: dict[str, Any], now: float, leeway: float, issuer: str) -> None:
    """PyJWT's own time and issuer checks, in its order, with ``now`` from our clock."""
    for name in ("iat", "nbf"):
        if name in claims:
            try:
                at = int(claims[name])
            except ValueError:
                raise jwt.DecodeError(f"{name} must be an integer") from None
            if at > now + leeway:
                raise jwt.ImmatureSignatureError(f"The token is not yet valid ({name})")
    try:
        exp = int(claims["exp"])
    except ValueError:
        raise jwt.DecodeError("exp must be an integer") from None
    if exp <= now - leeway:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if not isinstance(claims["iss"], str) or claims["iss"] != issuer:
        raise jwt.InvalidIssuerError("Invalid issuer")


def _resolve_request(claims: dict[str, Any]) -> ResolveRequest:
    """User tokens name ``owner``/``name``; Casdoor's client-credentials tokens are issued
    for the application itself, with ``owner`` "admin" and the client id in ``azp``."""
    owner, name, azp = claims.get("owner"), claims.get("name"), claims.get("azp")
    if owner == "admin":
        if isinstance(azp, str) and azp:
            return ResolveRequest(kind=PrincipalKind.APPLICATION, client_id=azp)
        raise InvalidToken("invalid_token", "application token without azp")
    if isinstance(owner, str) and owner and isinstance(name, str) and name:
        return ResolveRequest(kind=PrincipalKind.USER, organization=owner, name=name)
    raise InvalidToken("invalid_token", "token names no user or application")

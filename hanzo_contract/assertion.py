"""Short-lived signed identity assertion from the gateway plugin to upstreams.

An Ed25519-signed JWT (``X-Hanzo-Identity``). The plugin holds the private key; upstreams
hold only the public key, so an upstream that is compromised cannot mint identities for
the others. Upstreams trust this, never the bare ``X-User-Id``-style headers.

An assertion is bound to its receiver and to its request, so one seen in transit or in an
upstream's logs is not a bearer credential for anything else:

- ``aud`` names the upstream (each route of the gateway's table names its audience; each
  upstream verifies its own), so the memory service's assertion is refused by the sidecar;
- ``htm`` / ``htu`` are the request's method and raw path (without the query), as the
  gateway matched them against the route table, so it is refused on any other route.

Binding to method and path rather than to a one-time id the upstream remembers keeps
upstreams stateless (several replicas need no shared replay store, and a proxy's retry of
the same request still verifies). What is left is a replay of the very same method and path
by whoever captured it, within the assertion's life (60 s): that is the authority the
captured request carried anyway, and the key or token that obtained it is still needed for
anything else.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hanzo_contract.principal import Limits, Principal, PrincipalKind
from hanzo_contract.settings import write_private

ISSUER = "hanzo-gateway"
#: a route that names no audience; no Hanzo upstream accepts it
AUDIENCE = "hanzo-upstream"
MEMORY_AUDIENCE = "hanzo-memory"
SIDECAR_AUDIENCE = "hanzo-sidecar"
INFERENCE_AUDIENCE = "hanzo-inference"
DEFAULT_TTL_SECONDS = 60
_ALGORITHM = "EdDSA"


class InvalidAssertion(Exception):
    """The assertion is missing, forged, expired or for someone else."""


def generate_keypair() -> tuple[bytes, bytes]:
    """New Ed25519 key pair as ``(private_pem, public_pem)``."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def ensure_keypair(directory: Path) -> tuple[Path, Path]:
    """Create ``assertion.key`` / ``assertion.pub`` under ``directory`` once, then reuse."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = directory / "assertion.key", directory / "assertion.pub"
    if not private_path.exists():
        private_pem, public_pem = generate_keypair()
        write_private(private_path, private_pem)
        public_path.write_bytes(public_pem)
    return private_path, public_path


class AssertionSigner:
    def __init__(self, private_pem: bytes, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._key = serialization.load_pem_private_key(private_pem, password=None)
        self._ttl = ttl_seconds

    def sign(
        self,
        principal: Principal,
        request_id: str | None = None,
        *,
        audience: str | tuple[str, ...] = AUDIENCE,
        method: str | None = None,
        path: str | None = None,
    ) -> str:
        """An assertion for ``audience``; with ``method`` and ``path`` it is valid for that
        request only (an upstream that checks binding refuses one without)."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": audience if isinstance(audience, str) else list(audience),
            "iat": now,
            "exp": now + self._ttl,
            "sub": principal.subject,
            "org": principal.organization,
            "knd": principal.kind.value,
            "rol": list(principal.roles),
            "scp": sorted(principal.scopes),
            "kid": principal.key_id,
            "adm": principal.is_org_admin,
            "lim": principal.limits.model_dump(exclude_none=True),
        }
        if method is not None and path is not None:
            claims["htm"] = method.upper()
            claims["htu"] = path
        if request_id:
            claims["jti"] = request_id
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)


class AssertionVerifier:
    """Verifies assertions addressed to ``audience`` (the upstream that holds this)."""

    def __init__(
        self, public_pem: bytes, leeway_seconds: int = 5, audience: str = AUDIENCE
    ) -> None:
        self._key = serialization.load_pem_public_key(public_pem)
        self._leeway = leeway_seconds
        self.audience = audience

    def verify(self, token: str, method: str | None = None, path: str | None = None) -> Principal:
        """The principal of a valid assertion for this audience. With ``method`` and ``path``
        (the request the upstream received; raw path without the query) the assertion must
        have been signed for exactly that request."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=self.audience,
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
            bound = (claims.get("htm"), claims.get("htu"))
            if (method is not None or path is not None) and bound != ((method or "").upper(), path):
                raise InvalidAssertion("identity assertion was issued for another request")
            return Principal(
                organization=claims["org"],
                subject=claims["sub"],
                kind=PrincipalKind(claims.get("knd", "user")),
                roles=tuple(claims.get("rol", ())),
                scopes=frozenset(claims.get("scp", ())),
                key_id=claims.get("kid"),
                is_org_admin=bool(claims.get("adm", False)),
                limits=Limits(**claims.get("lim", {})),
            )
        except InvalidAssertion:
            raise
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise InvalidAssertion(f"invalid identity assertion: {exc}") from None


def raw_path(scope: dict[str, object]) -> str:
    """The ``htu`` an upstream checks: the path as the client sent it (what the gateway
    matched and signed), not decoded, without the query. ``scope`` is the ASGI scope."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(scope.get("path", ""))
    return raw.decode("latin-1").partition("?")[0]

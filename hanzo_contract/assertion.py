"""Short-lived signed identity assertion from the gateway plugin to upstreams.

An Ed25519-signed JWT (``X-Hanzo-Identity``). The plugin holds the private key; upstreams
hold only the public key, so an upstream that is compromised cannot mint identities for
the others. Upstreams trust this, never the bare ``X-User-Id``-style headers.
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
AUDIENCE = "hanzo-upstream"
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

    def sign(self, principal: Principal, request_id: str | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
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
        if request_id:
            claims["jti"] = request_id
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)


class AssertionVerifier:
    def __init__(self, public_pem: bytes, leeway_seconds: int = 5) -> None:
        self._key = serialization.load_pem_public_key(public_pem)
        self._leeway = leeway_seconds

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
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
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise InvalidAssertion(f"invalid identity assertion: {exc}") from None

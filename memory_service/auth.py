"""Who is calling. Routes only ever see a :class:`Principal` from an :class:`Authenticator`.

Routes trust only the gateway's signed assertion. Without a gateway (``auth_mode =
"direct"``), ``gateway_plugins.inline.InlineAuth`` runs the gateway's decision core in
front of the app and hands it the same assertion, so this module does not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from starlette.requests import Request

from hanzo_contract.assertion import AssertionVerifier, InvalidAssertion
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.errors import ApiError

READ = "memory:read"
WRITE = "memory:write"
DELETE = "memory:delete"


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Principal:
        """Return the caller or raise a 401 :class:`ApiError`."""
        ...


class AssertionAuthenticator:
    """Trusts only ``X-Hanzo-Identity`` signed by the gateway; bare identity headers are ignored."""

    def __init__(self, verifier: AssertionVerifier) -> None:
        self._verifier = verifier

    @classmethod
    def from_public_key_file(cls, path: Path) -> AssertionAuthenticator:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise RuntimeError(f"cannot read assertion public key {path}: {exc.strerror}") from None
        return cls(AssertionVerifier(pem))

    def authenticate(self, request: Request) -> Principal:
        token = request.headers.get(ASSERTION)
        if not token:
            raise ApiError(401, "unauthenticated", f"missing {ASSERTION} identity assertion")
        try:
            return self._verifier.verify(token)
        except InvalidAssertion:
            # The library's reason may quote the token; keep the message generic.
            raise ApiError(
                401, "invalid_assertion", "identity assertion is invalid or expired"
            ) from None


def require(principal: Principal, permission: str) -> None:
    if not principal.has(permission):
        raise ApiError(403, "forbidden", f"permission {permission!r} is required")

"""Who is calling and what they may do: authenticated once per request, declared per route.

Routes trust only the gateway's signed assertion. :class:`PrincipalBackend` runs an
:class:`Authenticator` in Starlette's ``AuthenticationMiddleware``, so ``request.user`` is a
:class:`Caller` (with ``.principal``) or an :class:`Anonymous` that remembers why, and
``request.auth.scopes`` holds the principal's permissions. Each route states what it needs
with :func:`requires`. Without a gateway in front, the stack composes the gateway's decision
core as middleware that hands this app the same assertion, so nothing here changes.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    AssertionVerifier,
    InvalidAssertion,
    raw_path,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.errors import ApiError, error_response

READ = "memory:read"
WRITE = "memory:write"
DELETE = "memory:delete"

Endpoint = Callable[[Request], Awaitable[Response]]


class Authenticator(Protocol):
    def authenticate(self, request: HTTPConnection) -> Principal:
        """Return the caller or raise a 401 :class:`ApiError`."""
        ...


class AssertionAuthenticator:
    """Trusts only ``X-Hanzo-Identity`` signed by the gateway for this service (audience
    ``hanzo-memory``) and for this very request (method and raw path); bare identity headers
    are ignored."""

    def __init__(self, verifier: AssertionVerifier) -> None:
        self._verifier = verifier

    @classmethod
    def from_public_key_file(cls, path: Path) -> AssertionAuthenticator:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise RuntimeError(f"cannot read assertion public key {path}: {exc.strerror}") from None
        return cls(AssertionVerifier(pem, audience=MEMORY_AUDIENCE))

    def authenticate(self, request: HTTPConnection) -> Principal:
        token = request.headers.get(ASSERTION)
        if not token:
            raise ApiError(401, "unauthenticated", f"missing {ASSERTION} identity assertion")
        try:
            return self._verifier.verify(
                token, request.scope.get("method", ""), raw_path(request.scope)
            )
        except InvalidAssertion:
            # The library's reason may quote the token; keep the message generic.
            raise ApiError(
                401, "invalid_assertion", "identity assertion is invalid or expired"
            ) from None


class Caller(BaseUser):
    """``request.user`` of an authenticated request."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.subject


class Anonymous(UnauthenticatedUser):
    """``request.user`` without a valid assertion; ``refusal`` is the 401 a guarded route
    answers. Open routes (health, OpenAPI, unknown paths) never look at it."""

    def __init__(self, refusal: ApiError) -> None:
        self.refusal = refusal


class PrincipalBackend(AuthenticationBackend):
    """The :class:`Authenticator` as the backend of Starlette's ``AuthenticationMiddleware``."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        try:
            principal = self.authenticator.authenticate(conn)
        except ApiError as refusal:
            return AuthCredentials(), Anonymous(refusal)
        return AuthCredentials(sorted(principal.scopes)), Caller(principal)


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """The middleware's refusal in the shared JSON error body (Starlette's default is text)."""
    return error_response(401, "unauthenticated", str(exc) or "authentication failed", request=conn)


def requires(permission: str | None = None) -> Callable[[Endpoint], Endpoint]:
    """Starlette's ``requires`` with the API's errors: 401 with the reason the caller is not
    authenticated, then 403 ``forbidden`` naming the missing ``permission`` (``None``: any
    authenticated caller)."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            if not isinstance(request.user, Caller):
                raise request.user.refusal  # an Anonymous: PrincipalBackend makes no other
            if permission is not None and permission not in request.auth.scopes:
                raise ApiError(403, "forbidden", f"permission {permission!r} is required")
            return await endpoint(request)

        return guarded

    return decorate


def principal_of(request: Request) -> Principal:
    """The caller a :func:`requires`-guarded route was let through for."""
    user = request.user
    assert isinstance(user, Caller), "route is not guarded by requires()"
    return user.principal

"""The caller, from the gateway plugin's signed assertion only (bare headers never count):
addressed to this service (``hanzo-inference``) and to this very request."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request

from hanzo_contract.assertion import (
    INFERENCE_AUDIENCE,
    AssertionVerifier,
    InvalidAssertion,
    raw_path,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from inference_gateway.errors import InferenceError

INVOKE = "inference:invoke"


class Authenticator:
    def __init__(self, public_key: Path) -> None:
        try:
            pem = public_key.read_bytes()
        except OSError as exc:
            raise RuntimeError(f"cannot read assertion public key {public_key}: {exc}") from None
        self._verifier = AssertionVerifier(pem, audience=INFERENCE_AUDIENCE)

    def caller(self, request: Request) -> tuple[Principal, str]:
        """The principal and the assertion that names it, or a 401/403."""
        token = request.headers.get(ASSERTION)
        if not token:
            raise InferenceError(401, "unauthenticated", f"missing {ASSERTION} identity assertion")
        try:
            principal = self._verifier.verify(token, request.method, raw_path(request.scope))
        except InvalidAssertion:
            raise InferenceError(
                401, "invalid_assertion", "identity assertion is invalid or expired"
            ) from None
        if not principal.has(INVOKE):
            raise InferenceError(403, "forbidden", f"permission {INVOKE!r} is required")
        return principal, token

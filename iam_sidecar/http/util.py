"""Small HTTP helpers: the running state, the shared error body, JSON body parsing,
bearer checks."""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from hanzo_contract.errors import error_body
from hanzo_contract.forwarded import ClientAddress
from hanzo_contract.headers import REQUEST_ID, safe_request_id
from iam_sidecar.errors import InvalidRequest, SidecarError, Unauthenticated
from iam_sidecar.state import SidecarState

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 64 * 1024


def sidecar_state(request: Request) -> SidecarState:
    """What the app's lifespan opened: key store, Casdoor client, metrics, policy."""
    return request.app.state.sidecar


def request_id(request: Request) -> str | None:
    """The gateway's ``X-Request-Id``, quoted in every error body so a client can name it."""
    return safe_request_id(request.headers.get(REQUEST_ID))


def error_response(exc: SidecarError, request: Request) -> JSONResponse:
    body = error_body(exc.code, exc.message, exc.details, request_id(request))
    return JSONResponse(body, status_code=exc.status)


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        data: Any = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "error": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise InvalidRequest("request body does not match the schema", details) from None


def check_bearer(request: Request, expected: str) -> None:
    """Constant-time check of ``Authorization: Bearer <expected>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing bearer token")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthenticated("invalid bearer token")


def client_address(request: Request) -> str | None:
    """The client of ``request`` for audit rows: ``X-Forwarded-For`` counts only from a
    trusted proxy (``trusted_proxies``), never from the client itself."""
    peer = request.client.host if request.client else None
    addresses = ClientAddress(sidecar_state(request).settings.trusted_proxies)
    return addresses.resolve(
        peer, request.headers.get("x-forwarded-for"), request.headers.get("x-real-ip")
    )

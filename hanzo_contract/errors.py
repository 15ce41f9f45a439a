"""One JSON error body for every service: ``{"error": {"code", "message", ...}}``.

``request_id`` is the ``X-Request-Id`` of the request (made by the gateway when the client
sent none), so a client can quote it and an operator find the request in every log.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hanzo_contract.request_id import current_request_id


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(
    code: str, message: str, details: Any | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The body; ``request_id`` defaults to the id of the request being served, so every
    error a service answers names it without each handler passing it."""
    request_id = request_id or current_request_id()
    detail = ErrorDetail(code=code, message=message, details=details, request_id=request_id)
    body = ErrorBody(error=detail)
    return body.model_dump(exclude_none=True)

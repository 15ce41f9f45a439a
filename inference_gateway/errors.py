"""The inference gateway's one exception, rendered as the shared JSON error body: a client
sees ours whether the fault is its request, its plan, or an upstream."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hanzo_contract.errors import error_body


class InferenceError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        #: e.g. ``Retry-After`` and ``RateLimit-*`` of a token quota refusal
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = error_body(self.code, self.message, self.details)
        return JSONResponse(body, self.status, headers=self.headers)


def upstream_error(status: int, raw: bytes) -> InferenceError:
    """An upstream's refusal in our body: a 4xx keeps its status (the request was at fault;
    only the upstream's own message is kept, never its headers), anything else is a 502."""
    message = f"upstream answered {status}"
    try:
        detail = json.loads(raw)["error"]
        text = detail.get("message") if isinstance(detail, dict) else detail
        if isinstance(text, str) and text:
            message = f"upstream: {text[:500]}"
    except (ValueError, KeyError, TypeError):
        pass
    if 400 <= status < 500 and status not in (401, 403):
        return InferenceError(status, "upstream_error", message)
    # the upstream refusing *our* credentials, or failing, is not the caller's fault
    return InferenceError(502, "upstream_error", message)


async def inference_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InferenceError)
    return exc.response()


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return JSONResponse(error_body(code, "no such endpoint"), status)


async def server_error_handler(_request: Request, exc: Exception) -> Response:
    import logging

    logging.getLogger("inference_gateway").error("unhandled: %s", type(exc).__name__, exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal error"), 500)

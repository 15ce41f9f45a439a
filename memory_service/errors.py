"""The service's one exception type and its error handlers, all rendering the shared JSON
error body: a client never sees Starlette's plain-text errors or a traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hanzo_contract.errors import error_body
from hanzo_contract.headers import REQUEST_ID, safe_request_id

log = logging.getLogger("memory_service")


class ApiError(Exception):
    """A precise client- or server-facing error: status, stable code, safe message."""

    def __init__(self, status: int, code: str, message: str, details: Any | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any | None = None,
    request: HTTPConnection | None = None,
) -> JSONResponse:
    """The shared error body; with ``request``, naming its ``X-Request-Id`` (the gateway's)."""
    request_id = safe_request_id(request.headers.get(REQUEST_ID)) if request else None
    return JSONResponse(error_body(code, message, details, request_id), status_code=status)


def not_found(what: str = "memory") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, request)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (no such route or method)."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), request=request)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "internal error", request=request)


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_error_handler,
    Exception: server_error_handler,
}


class NativePanics:
    """ASGI middleware: a panic in a native library (LanceDB's Rust raises pyo3's
    ``PanicException``, a ``BaseException``) is re-raised as an ordinary error, so it is
    answered with the JSON 500 body like any other failure, not uvicorn's plain-text 500.
    Cancellation and interpreter exits pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except (Exception, asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:
            raise RuntimeError(f"{type(exc).__name__} in a native library") from exc

"""The service's one exception type, rendered as the shared JSON error body."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from hanzo_contract.errors import error_body


class ApiError(Exception):
    """A precise client- or server-facing error: status, stable code, safe message."""

    def __init__(self, status: int, code: str, message: str, details: Any | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, details: Any | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


def not_found(what: str = "memory") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")

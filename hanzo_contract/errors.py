"""One JSON error body for every service: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(code: str, message: str, details: Any | None = None) -> dict[str, Any]:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return body.model_dump(exclude_none=True)

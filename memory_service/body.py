"""Request bodies: the size limit is enforced before parsing, then JSON, then pydantic."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from memory_service.bounds import MAX_BODY_DEPTH, MAX_INT_DIGITS, depth_problem
from memory_service.clock import to_us
from memory_service.errors import ApiError
from memory_service.models import ImportLine

M = TypeVar("M", bound=BaseModel)


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` bytes without buffering it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid_content_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _bounded_int(text: str) -> int:
    """Refuse integers longer than any field accepts before Python converts them (past
    4,300 digits ``int()`` raises, and a 4,000-digit conversion is slow)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ApiError(400, "number_too_large", f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(400, "number_too_large", "a number is too large to be represented")
    return value


def _no_constant(name: str) -> NoReturn:
    raise ApiError(400, "malformed_json", f"{name} is not valid JSON")


def loads_bounded(raw: bytes | str, what: str = "request body") -> Any:
    """JSON text as data within the body bounds, or a precise 400: never a RecursionError,
    an integer conversion error, ``NaN``/``Infinity`` or a string that cannot be stored."""
    try:
        data = json.loads(
            raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError:
        data = None
        problem: str | None = f"nesting deeper than {MAX_BODY_DEPTH} levels"
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, "malformed_json", f"{what} is not valid JSON: {exc}") from None
    else:
        problem = depth_problem(data, MAX_BODY_DEPTH)
    if problem is not None:
        code = "json_too_deep" if problem.startswith("nesting") else "malformed_json"
        raise ApiError(400, code, f"{what}: {problem}")
    return data


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise ApiError(400, "empty_body", "request body is empty; a JSON object is expected")
    return loads_bounded(raw)


def validation_details(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Where and why, without echoing the input back (it may be large or sensitive)."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def validate(model: type[M], data: Any, prefix: tuple[Any, ...] = ()) -> M:
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(
            422, "validation_error", "request body is invalid", validation_details(exc, prefix)
        ) from None


async def read_model(request: Request, model: type[M], limit: int) -> M:
    return validate(model, parse_json(await read_limited(request, limit)))


def import_lines(raw: bytes, now: int) -> tuple[list[ImportLine], int]:
    """A JSONL export's memories, minus those already expired at ``now`` (and their count)."""
    items: list[ImportLine] = []
    expired = 0
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        data = loads_bounded(line, f"line {n}")
        item = validate(ImportLine, data, prefix=("line", n))
        if item.expires_at is not None and to_us(item.expires_at) <= now:
            expired += 1
            continue
        items.append(item)
    return items, expired

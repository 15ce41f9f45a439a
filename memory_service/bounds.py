"""How big and how deep client JSON may be: the bounds, checked without recursion.

One writer's hostile body must not become every reader's failure. Nesting is what breaks
Python's parser and serializers (``RecursionError``), so every walk here uses an explicit
stack. The same bounds are checked at the boundary (a 4xx before anything is stored) and
applied on every read (:func:`readable_metadata`), because rows stored before a bound existed
must still be readable, clearly marked, rather than break the organization's reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: nesting of a whole request body (objects and arrays); deeper bodies are refused unparsed
MAX_BODY_DEPTH = 32
#: digits of a JSON integer (int64 has 19); Python refuses more than 4,300 anyway, as a 500
MAX_INT_DIGITS = 20
#: metadata: nesting below the metadata object, keys in all its objects, size as JSON
MAX_METADATA_DEPTH = 8
MAX_METADATA_KEYS = 256
MAX_METADATA_BYTES = 16_384
#: the key a read puts in place of metadata that is beyond the bounds (stored before them)
UNREADABLE_KEY = "hanzo_unreadable_metadata"


def depth_problem(value: Any, limit: int) -> str | None:
    """Why ``value`` is not acceptable JSON data within ``limit`` levels (``None``: it is).

    Also refuses strings that are not valid Unicode text (lone surrogates from ``\\ud800``
    escapes): they cannot be stored or encoded as UTF-8 later.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return f"nesting deeper than {limit} levels"
            children = list(item.values()) if isinstance(item, dict) else item
            if isinstance(item, dict):
                children.extend(item.keys())
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string is not valid Unicode (lone surrogate)"
    return None


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why ``metadata`` is beyond the bounds (``None``: within them)."""
    keys = 0
    stack: list[tuple[Any, int]] = [(metadata, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_METADATA_DEPTH:
                return f"metadata nests deeper than {MAX_METADATA_DEPTH} levels"
            if isinstance(item, dict):
                keys += len(item)
                if keys > MAX_METADATA_KEYS:
                    return f"metadata has more than {MAX_METADATA_KEYS} keys in all"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return "metadata holds a number that is not finite"
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode())
    except (ValueError, TypeError, RecursionError):
        return "metadata is not JSON text"
    if size > MAX_METADATA_BYTES:
        return f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON"
    return None


def _unreadable(reason: str) -> dict[str, Any]:
    return {UNREADABLE_KEY: f"{reason}; stored before this bound existed, not returned"}


def readable_metadata(stored: Any) -> dict[str, Any]:
    """Stored metadata (JSON text or an already decoded value) as a reader may see it: as is
    when within the bounds, else a one-key object saying why it is withheld."""
    if isinstance(stored, str | bytes):
        try:
            stored = json.loads(stored)
        except (ValueError, RecursionError):
            return _unreadable("metadata is not readable JSON")
    if not isinstance(stored, dict):
        return _unreadable("metadata is not a JSON object")
    problem = metadata_problem(stored)
    return stored if problem is None else _unreadable(problem)

"""The memory API's public document: built from the route table in ``routes.py`` and the
pydantic models the handlers validate with (``hanzo_contract.openapi``); each endpoint
states its operationId, models and permission where it is defined, with :func:`operation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hanzo_contract.openapi import MEMORY_OPENAPI_PATH, RouteLike, build_document

#: ``GET /v1/memory/retrieve``'s query string is read apart (``tag`` repeats, ``metadata``
#: is JSON): its parameters are listed here, beside the route's ``ListParams`` model
RETRIEVE_PARAMS: tuple[dict[str, Any], ...] = tuple(
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("id", {"type": "string"}, "fetch one memory by id"),
        ("namespace", {"type": "string"}, ""),
        ("scope", {"type": "string", "enum": ["user", "org"]}, ""),
        ("tag", {"type": "array", "items": {"type": "string"}}, "repeat; all must match"),
        ("metadata", {"type": "string"}, 'JSON object of equality filters, e.g. {"k":"v"}'),
        ("created_after", {"type": "string", "format": "date-time"}, ""),
        ("created_before", {"type": "string", "format": "date-time"}, ""),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, ""),
        ("cursor", {"type": "string"}, "next_cursor of the previous page"),
    )
)


def openapi_document(routes: Iterable[RouteLike] | None = None) -> dict[str, Any]:
    """The document of ``routes`` (by default the service's ``ROUTES``), served at
    ``MEMORY_OPENAPI_PATH`` through the gateway."""
    if routes is None:
        from memory_service.routes import ROUTES  # routes.py imports this module

        routes = ROUTES
    return build_document(
        "Hanzo memory API",
        "1.0.0",
        routes,
        description="Memories per tenant: store, search, list, update, delete, export, "
        f"import, erase. This document: {MEMORY_OPENAPI_PATH}.",
    )

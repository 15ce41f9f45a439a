"""The keys and usage API's public document, built from the sidecar's own routes.

The endpoints in ``keys.py`` state their operationId, models and permission with
``hanzo_contract.openapi.operation``; the internal endpoints (key verification, reports,
health) are unmarked and stay out of the public document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hanzo_contract.openapi import (
    KEYS_OPENAPI_PATH,
    Operation,
    RouteLike,
    build_document,
    operation,
)


def openapi_document(routes: Iterable[RouteLike]) -> dict[str, Any]:
    return build_document(
        "Hanzo keys and usage API",
        "1.0.0",
        routes,
        description="Self-service API keys (hk-...) and usage of the signed-in caller. "
        f"This document: {KEYS_OPENAPI_PATH}.",
    )


@operation(Operation("keysOpenApi", "This document", None))
async def serve_openapi(request: Request) -> Response:
    """Public (the route table lets it through without a credential)."""
    return JSONResponse(openapi_document(request.app.routes))

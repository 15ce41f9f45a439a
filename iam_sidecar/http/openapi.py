"""The keys and usage API's public document, built from the sidecar's own routes.

The endpoints in ``keys.py`` state their operationId, models and permission with
``hanzo_contract.openapi.operation``; the internal endpoints (key verification, reports,
health) are unmarked and stay out of the public document.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

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


#: the docs page: a self-written renderer of both documents, no external asset at all
DOCS_PAGE = (Path(__file__).with_name("docs.html")).read_text()
#: the browser refuses anything from another origin (no CDN, works offline)
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@operation(Operation("apiDocs", "The API reference page (HTML)", None, response_media="text/html"))
async def serve_docs(_request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP})

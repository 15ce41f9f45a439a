"""A tiny upstream that answers every request with the headers it received.

The end-to-end tests and the benchmark put it behind nginx/Caddy to see exactly what an
upstream gets: identity headers, the assertion, and nothing the client forged.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "headers": [[k, v] for k, v in request.headers.items()],
        }
    )


app = Starlette(
    routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
)

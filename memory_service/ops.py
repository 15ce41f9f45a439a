"""Readiness and metrics, on the service's own port (the gateway does not route them)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from memory_service.errors import error_response
from memory_service.metrics import REGISTRY
from memory_service.service import MemoryService

#: a tenant no principal can be (organization names are non-empty): the probe reads nothing
_PROBE_TENANT = ""


async def readyz(request: Request) -> Response:
    """Ready when the backend answers a real read; 503 with the shared error body when not,
    so a load balancer stops sending writes to a replica whose store is away."""
    service: MemoryService = request.app.state.service
    try:
        await service.backend.usage(_PROBE_TENANT)
    except Exception as exc:  # any store failure means not ready
        return error_response(
            503,
            "not_ready",
            "the memory backend is unavailable",
            {"backend": service.backend.name, "error": type(exc).__name__},
            request,
        )
    return JSONResponse({"status": "ok", "backend": "ok"})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


OPS_ROUTES = [
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

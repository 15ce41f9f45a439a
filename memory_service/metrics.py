"""Prometheus metrics of the memory service, in a registry of its own, and the middleware
that counts requests by route template (never by raw path: ids would explode the series).

Served at ``/metrics`` on the service's own port; the gateway routes only ``/v1/memory/*``
here, so users never reach it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match

from hanzo_contract.request_id import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "hanzo_memory_requests",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "hanzo_memory_request_seconds",
    "Time to answer one request, by method and route template",
    ["method", "route"],
    buckets=_FAST,
    registry=REGISTRY,
)
BACKEND_SECONDS = Histogram(
    "hanzo_memory_backend_seconds",
    "Time of one storage backend operation, by backend and operation",
    ["backend", "operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "hanzo_memory_backend_errors",
    "Backend operations that raised, by backend and operation",
    ["backend", "operation"],
    registry=REGISTRY,
)
EMBEDDING_SECONDS = Histogram(
    "hanzo_memory_embedding_seconds",
    "Time to embed one batch (kind=batch) or one search query (kind=query)",
    ["model", "kind"],
    buckets=_FAST,
    registry=REGISTRY,
)
EMBEDDED_TEXTS = Counter(
    "hanzo_memory_embedded_texts",
    "Texts embedded, by model",
    ["model"],
    registry=REGISTRY,
)

UNMATCHED = "unmatched"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` matches (``/v1/memory/{memory_id}``)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every HTTP request under its route template and status."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method, route = scope["method"], route_template(self.routes, scope)
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - start)

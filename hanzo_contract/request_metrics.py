"""Counting and timing HTTP requests by route template, for every service's ``/metrics``.

One copy for every part, so each counts alike: by the route's template, never by the raw
path (ids would explode the series), and by the status the client got.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match

from hanzo_contract.request_id import ASGIApp, Message, Receive, Scope, Send

#: the route label of a request no route matched (a 404)
UNMATCHED = "unmatched"

#: latency buckets, in seconds, from a cached read to a slow upstream call
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)  # fmt: skip


def request_metrics(
    prefix: str, registry: CollectorRegistry, buckets: tuple[float, ...] = LATENCY_BUCKETS
) -> tuple[Counter, Histogram]:
    """``<prefix>_requests`` (method, route, status) and ``<prefix>_request_seconds``
    (method, route) in ``registry``: what :class:`RequestMetricsMiddleware` fills."""
    requests = Counter(
        f"{prefix}_requests",
        "HTTP requests by method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )
    seconds = Histogram(
        f"{prefix}_request_seconds",
        "Time to answer one request (a stream: to its last byte), by method and route",
        ["method", "route"],
        buckets=buckets,
        registry=registry,
    )
    return requests, seconds


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` matches (``/v1/memory/{memory_id}``)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


class StatusCapture:
    """``send`` that remembers the status the app answered: 500 until it starts an answer,
    so an app that raised or answered nothing counts (and logs) as the failure it was.
    One copy for every part that reports the status the client got."""

    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


class RequestMetricsMiddleware:
    """Counts (``requests``: method, route, status) and times (``seconds``: method, route)
    every HTTP request; a streamed answer is timed to its last byte."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        requests: Counter,
        seconds: Histogram,
    ) -> None:
        self.app = app
        self.routes = routes
        self.requests = requests
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = StatusCapture(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            method, route = scope["method"], route_template(self.routes, scope)
            self.requests.labels(method, route, str(sent.status)).inc()
            self.seconds.labels(method, route).observe(time.perf_counter() - start)

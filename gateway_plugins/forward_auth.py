"""The forward-auth HTTP service every HTTP-calling gateway can use.

Endpoints (any method):

- ``/auth``: APISIX ``forward-auth``, Traefik ForwardAuth, Caddy ``forward_auth`` (original
  request in ``X-Forwarded-Method`` / ``X-Forwarded-Uri``), or nginx-style
  ``X-Original-Method`` / ``X-Original-URI``. Answers 200, 400, 401, 403, 429 or 503.
- ``/auth/nginx``: same, for nginx ``auth_request``, which only understands 2xx, 401 and
  403 (anything else becomes a 500): a 429 or 503 is answered as 403 with the real status
  in ``X-Hanzo-Status``, which the shipped nginx config turns back into a 429/503.
- ``/envoy/<original path>``: Envoy ``ext_authz`` HTTP service with ``path_prefix: /envoy``
  (Envoy keeps the original method and appends the original path).
- ``/metrics`` (Prometheus), ``/healthz``.

Allow answers carry the identity headers (and the signed assertion) for the gateway to
copy upstream; deny answers carry the shared JSON error body, also compacted into
``X-Hanzo-Error`` for gateways that can only forward headers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway_plugins import metrics
from gateway_plugins.core import DecisionCore
from gateway_plugins.decision import ERROR_HEADER, STATUS_HEADER, Decision
from gateway_plugins.request import AuthRequest

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ENVOY_PREFIX = "/envoy"


def _original(request: Request) -> tuple[str, str]:
    h = request.headers
    method = h.get("x-forwarded-method") or h.get("x-original-method") or ""
    uri = h.get("x-forwarded-uri") or h.get("x-original-uri") or ""
    return method, uri


def _render(decision: Decision, nginx: bool = False) -> Response:
    if decision.allowed:
        headers = dict(decision.headers)
        headers[STATUS_HEADER] = str(decision.status)
        return Response(status_code=200, headers=headers)
    body = decision.body_bytes()
    headers = {
        **decision.headers,
        STATUS_HEADER: str(decision.status),
        ERROR_HEADER: body.decode(),
        "Cache-Control": "no-store",
    }
    status = decision.status
    if nginx and status not in (401, 403):
        status = 403
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for") or request.headers.get("x-real-ip")
    if forwarded:
        return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else None


def create_app(core: DecisionCore) -> Starlette:
    async def decide(request: Request, method: str, uri: str, nginx: bool) -> Response:
        if not method or not uri:
            return _render(
                Decision(
                    400,
                    "missing_original_request",
                    message="the gateway sent no "
                    "original method/URI (X-Forwarded-Method/-Uri or X-Original-*)",
                ),
                nginx,
            )
        auth = AuthRequest(method.upper(), uri, request.headers, _client_ip(request))
        return _render(await core.decide(auth), nginx)

    async def generic(request: Request) -> Response:
        method, uri = _original(request)
        return await decide(request, method, uri, nginx=False)

    async def nginx(request: Request) -> Response:
        method, uri = _original(request)
        return await decide(request, method, uri, nginx=True)

    async def envoy(request: Request) -> Response:
        path = request.url.path[len(ENVOY_PREFIX) :] or "/"
        query = request.url.query
        return await decide(request, request.method, path + ("?" + query if query else ""), False)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await core.aclose()

    return Starlette(
        routes=[
            Route("/auth", generic, methods=_METHODS),
            Route("/auth/nginx", nginx, methods=_METHODS),
            Route("/envoy", envoy, methods=_METHODS),
            Route("/envoy/{rest:path}", envoy, methods=_METHODS),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )

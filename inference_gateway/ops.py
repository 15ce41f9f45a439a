"""Readiness and metrics, on the gateway's own port (the gateway routes only the OpenAI
paths here).

Ready means a call can be served: the plugin that holds the token counters answers (no
metered call starts without a reservation), and every upstream that names a ``ready_url``
says it is ready; the stack names the memory service's ``/readyz`` for the embeddings
model, which that service builds before it serves anything, so an answer means the model
is loaded and its store reachable. Not ready is the shared error body with 503, naming the
check that failed, so a load balancer stops sending calls here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference_gateway.errors import InferenceError
from inference_gateway.metrics import REGISTRY

if TYPE_CHECKING:
    from inference_gateway.app import InferenceGateway

#: the longest a readiness probe waits for one dependency
_PROBE_SECONDS = 2.0


async def _upstream_ready(http: httpx.AsyncClient, url: str) -> str:
    try:
        response = await http.get(url, timeout=_PROBE_SECONDS)
    except httpx.HTTPError as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"not ready: {response.status_code}"


async def readiness(gateway: InferenceGateway) -> dict[str, str]:
    """Each check by name (``quota``, ``upstream:<name>``): ``ok`` or why not, probed at
    once so a slow dependency costs one probe's time, not the sum."""
    checks: dict[str, str] = {}

    async def probe(name: str, url: str | None) -> None:
        if url is None:
            checks[name] = await gateway.charger.ready()
        else:
            checks[name] = await _upstream_ready(gateway.http, url)

    async with anyio.create_task_group() as group:
        group.start_soon(probe, "quota", None)
        for spec in gateway.settings.upstreams:
            if spec.ready_url is not None:
                group.start_soon(probe, f"upstream:{spec.name}", spec.ready_url)
    return dict(sorted(checks.items()))


async def readyz(request: Request) -> Response:
    checks = await readiness(request.app.state.gateway)
    if all(state == "ok" for state in checks.values()):
        return JSONResponse({"status": "ok", **checks})
    message = "a dependency of the inference gateway is not ready"
    return InferenceError(503, "not_ready", message, checks).response()


async def metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


OPS_ROUTES = [
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

"""Liveness, readiness and metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam_sidecar.errors import NotReady
from iam_sidecar.http.util import error_response, sidecar_state


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the store answers; Casdoor being down degrades, it does not unready.

    Verification serves from the store, so a gateway should keep sending traffic here
    while Casdoor is away; the body says what is degraded. Not ready is the shared error
    body (503, ``not_ready``, the request id), like every other part's.
    """
    state = sidecar_state(request)
    try:
        await state.keys.db.ping()
    except Exception as exc:  # any store failure means not ready
        refusal = NotReady("the key store is unavailable", {"store": type(exc).__name__})
        return error_response(refusal, request)
    casdoor_ok = await state.casdoor.health()
    state.metrics.casdoor_up.set(1 if casdoor_ok else 0)
    return JSONResponse(
        {
            "status": "ok" if casdoor_ok else "degraded",
            "store": "ok",
            "casdoor": "ok" if casdoor_ok else "unreachable",
            "last_reconcile_error": state.last_reconcile_error,
        }
    )


async def metrics(request: Request) -> Response:
    state = sidecar_state(request)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

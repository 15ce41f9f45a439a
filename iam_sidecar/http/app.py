"""The sidecar's Starlette app: verification for gateways, self-service keys, ops.

:func:`build_app` assembles it from settings: the tenant file (if any) seeds the served
policy and becomes the reconcile loop's first step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hanzo_contract.errors import error_body
from hanzo_contract.openapi import DOCS_PATH, KEYS_OPENAPI_PATH
from hanzo_contract.reports import AUDIT_DENIALS_PATH, USAGE_REPORT_PATH
from hanzo_contract.request_id import RequestIdMiddleware
from hanzo_contract.telemetry import TracingMiddleware
from hanzo_contract.verify import RESOLVE_PATH, VERIFY_PATH
from iam_sidecar.casdoor.errors import CasdoorError
from iam_sidecar.errors import SidecarError, UpstreamRefused
from iam_sidecar.http import keys, openapi, ops, signup, verify
from iam_sidecar.http.signup import SIGNUP_GUARD_PATH
from iam_sidecar.http.token_gate import TOKEN_GUARD_PATH, guarded_token
from iam_sidecar.http.util import error_response, request_id
from iam_sidecar.keys.store import Clock
from iam_sidecar.reconcile import TenantStep, reconcile_forever
from iam_sidecar.records.denials import WINDOW_SECONDS, write_buckets
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.state import SidecarState, build_state, close_state
from iam_sidecar.tenants.desired import policy_of
from iam_sidecar.tenants.loader import load_tenant_file
from iam_sidecar.tenants.policy import TenantPolicy
from iam_sidecar.tenants.sync import tenant_step

log = logging.getLogger(__name__)


async def _sidecar_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SidecarError)
    return error_response(exc, request)


async def _casdoor_error(request: Request, exc: Exception) -> Response:
    """Casdoor's own message goes to the log, not to the client."""
    assert isinstance(exc, CasdoorError)
    log.error("Casdoor refused %s: %s", exc.action or "a call", exc.message)
    refused = UpstreamRefused(f"Casdoor refused the request ({exc.action or 'call'})")
    return error_response(refused, request)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        error_body("not_found", "no such route", None, request_id(request)), status_code=404
    )


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        error_body("method_not_allowed", "method not allowed", None, request_id(request)),
        status_code=405,
    )


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(
        error_body("internal_error", "internal error", None, request_id(request)), status_code=500
    )


async def _write_closed_denials(state: SidecarState) -> None:
    """Aggregated anonymous denials reach the audit log soon after their minute ends, even
    when no further denial arrives to carry them."""
    while True:
        await asyncio.sleep(WINDOW_SECONDS / 4)
        try:
            async with state.writing:
                await write_buckets(state.keys.db, state.denials.closed())
        except Exception:  # a failed write loses those counts; the server keeps serving
            log.exception("could not write aggregated denials")


def create_app(
    settings: SidecarSettings | None = None,
    *,
    policy: TenantPolicy | None = None,
    tenant_step: TenantStep | None = None,
    run_reconcile: bool = True,
    clock: Clock = time.time,
) -> Starlette:
    """The sidecar app. Its lifespan opens the key store and runs the reconcile loop.

    ``tenant_step`` (built from the tenant file by
    :func:`iam_sidecar.tenants.sync.tenant_step`) runs first in every reconcile; ``policy``
    seeds plan limits and app scopes; ``clock`` is the key store's.
    """
    settings = settings or SidecarSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = await build_state(settings, policy, clock)
        app.state.sidecar = state
        task = asyncio.create_task(reconcile_forever(state, tenant_step)) if run_reconcile else None
        denials = asyncio.create_task(_write_closed_denials(state))
        try:
            yield
        finally:
            async with state.writing:  # a write in progress ends first, then the loops stop
                for running in (task, denials):
                    if running is not None:
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running
            await close_state(state)

    routes = [
        Route(VERIFY_PATH, verify.verify_key, methods=["POST"]),
        Route(RESOLVE_PATH, verify.resolve_principal, methods=["POST"]),
        Route(AUDIT_DENIALS_PATH, verify.report_denial, methods=["POST"]),
        Route(USAGE_REPORT_PATH, verify.report_usage, methods=["POST"]),
        Route("/v1/keys", keys.list_keys, methods=["GET"]),
        Route("/v1/keys", keys.create_key, methods=["POST"]),
        Route("/v1/keys/{key_id}", keys.show_key, methods=["GET"]),
        Route("/v1/keys/{key_id}", keys.revoke_key, methods=["DELETE"]),
        Route("/v1/keys/{key_id}/rotate", keys.rotate_key, methods=["POST"]),
        Route("/v1/usage", keys.usage, methods=["GET"]),
        Route(KEYS_OPENAPI_PATH, openapi.serve_openapi, methods=["GET"]),
        Route(DOCS_PATH, openapi.serve_docs, methods=["GET"]),
        Route(SIGNUP_GUARD_PATH, signup.guarded_signup, methods=["POST"]),
        Route(TOKEN_GUARD_PATH, guarded_token, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TracingMiddleware, service="sidecar"),
        ],
        lifespan=lifespan,
        exception_handlers={
            SidecarError: _sidecar_error,
            CasdoorError: _casdoor_error,
            404: _not_found,
            405: _method_not_allowed,
            Exception: _internal,
        },
    )


def build_app(settings: SidecarSettings, clock: Clock = time.time) -> Starlette:
    """Fails fast (``TenantFileError``) if the configured tenant file is invalid at start."""
    if settings.tenant_file is None:
        return create_app(settings, clock=clock)
    spec = load_tenant_file(settings.tenant_file)
    return create_app(
        settings,
        policy=policy_of(spec),
        tenant_step=tenant_step(
            settings.tenant_file, prune=settings.reconcile_prune, apply=settings.reconcile_apply
        ),
        clock=clock,
    )

"""The sidecar's Starlette app: verification for gateways, self-service keys, ops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hanzo_contract.assertion import AssertionVerifier
from hanzo_contract.errors import error_body
from hanzo_contract.reports import AUDIT_DENIALS_PATH, USAGE_REPORT_PATH
from hanzo_contract.verify import RESOLVE_PATH, VERIFY_PATH
from iam_sidecar import routes_keys, routes_ops, routes_verify
from iam_sidecar.casdoor_errors import CasdoorError
from iam_sidecar.casdoor_factory import casdoor_client
from iam_sidecar.errors import SidecarError, UpstreamRefused
from iam_sidecar.http_util import error_response
from iam_sidecar.key_service import KeyService
from iam_sidecar.keystore import KeyStore
from iam_sidecar.policy import TenantPolicy
from iam_sidecar.reconcile import TenantStep, reconcile_forever
from iam_sidecar.resolver import OwnerResolver
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.state import SidecarState

log = logging.getLogger(__name__)


def _verifier(settings: SidecarSettings) -> AssertionVerifier | None:
    path = settings.assertion_public_key_path
    if path is None or not path.exists():
        log.warning("no assertion public key at %s: self-service /v1/keys disabled", path)
        return None
    return AssertionVerifier(path.read_bytes())


async def build_state(
    settings: SidecarSettings, policy: TenantPolicy | None = None
) -> SidecarState:
    """Open the store and the Casdoor client; the caller closes them (``close_state``)."""
    assert settings.db_path is not None
    store = await KeyStore.open(settings.db_path, settings.hash_secret_bytes)
    casdoor = casdoor_client(settings)
    state_box: list[SidecarState] = []
    resolver = OwnerResolver(
        casdoor, lambda: state_box[0].policy, ttl=settings.role_cache_ttl_seconds
    )
    state = SidecarState(
        settings=settings,
        store=store,
        casdoor=casdoor,
        resolver=resolver,
        keys=KeyService(store, resolver),
        verifier=_verifier(settings),
    )
    if policy is None and settings.tenant_file is not None:
        # plan limits and service-app scopes also matter to the CLI (app-owned keys)
        from iam_sidecar.tenants.desired import policy_of
        from iam_sidecar.tenants.loader import load_tenant_file

        policy = policy_of(load_tenant_file(settings.tenant_file))
    if policy is not None:
        state.policy = policy
    state_box.append(state)
    return state


async def close_state(state: SidecarState) -> None:
    await state.casdoor.aclose()
    await state.store.close()


async def _sidecar_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SidecarError)
    return error_response(exc)


async def _casdoor_error(request: Request, exc: Exception) -> Response:
    """Casdoor's own message goes to the log, not to the client."""
    assert isinstance(exc, CasdoorError)
    log.error("Casdoor refused %s: %s", exc.action or "a call", exc.message)
    refused = UpstreamRefused(f"Casdoor refused the request ({exc.action or 'call'})")
    return error_response(refused)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body("not_found", "no such route"), status_code=404)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body("method_not_allowed", "method not allowed"), status_code=405)


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(error_body("internal_error", "internal error"), status_code=500)


def create_app(
    settings: SidecarSettings | None = None,
    *,
    policy: TenantPolicy | None = None,
    tenant_step: TenantStep | None = None,
    run_reconcile: bool = True,
) -> Starlette:
    """The sidecar app. Its lifespan opens the store and runs the reconcile loop.

    ``tenant_step`` (built from the tenant file by :func:`iam_sidecar.serve.tenant_step`)
    runs first in every reconcile; ``policy`` seeds plan limits and app scopes.
    """
    settings = settings or SidecarSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = await build_state(settings, policy)
        app.state.sidecar = state
        task = asyncio.create_task(reconcile_forever(state, tenant_step)) if run_reconcile else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_state(state)

    routes = [
        Route(VERIFY_PATH, routes_verify.verify_key, methods=["POST"]),
        Route(RESOLVE_PATH, routes_verify.resolve_principal, methods=["POST"]),
        Route(AUDIT_DENIALS_PATH, routes_verify.report_denial, methods=["POST"]),
        Route(USAGE_REPORT_PATH, routes_verify.report_usage, methods=["POST"]),
        Route("/v1/keys", routes_keys.list_keys, methods=["GET"]),
        Route("/v1/keys", routes_keys.create_key, methods=["POST"]),
        Route("/v1/keys/{key_id}", routes_keys.show_key, methods=["GET"]),
        Route("/v1/keys/{key_id}", routes_keys.revoke_key, methods=["DELETE"]),
        Route("/v1/keys/{key_id}/rotate", routes_keys.rotate_key, methods=["POST"]),
        Route("/v1/usage", routes_keys.usage, methods=["GET"]),
        Route("/healthz", routes_ops.healthz, methods=["GET"]),
        Route("/readyz", routes_ops.readyz, methods=["GET"]),
        Route("/metrics", routes_ops.metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SidecarError: _sidecar_error,
            CasdoorError: _casdoor_error,
            404: _not_found,
            405: _method_not_allowed,
            Exception: _internal,
        },
    )

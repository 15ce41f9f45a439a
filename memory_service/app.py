"""The app factory: parts from settings (or passed in), routes, authentication, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route

from hanzo_contract.mcp_tools import MCP_PATH
from hanzo_contract.request_id import RequestIdMiddleware
from hanzo_contract.request_metrics import RequestMetricsMiddleware
from hanzo_contract.telemetry import TracingMiddleware
from memory_service.auth import (
    AssertionAuthenticator,
    Authenticator,
    PrincipalBackend,
    on_auth_error,
)
from memory_service.backends.base import MemoryBackend
from memory_service.backends.factory import make_backend
from memory_service.backends.sealed import SealedBackend
from memory_service.clock import Clock, now_us
from memory_service.embeddings import Embedder, make_embedder
from memory_service.errors import EXCEPTION_HANDLERS, NativePanics
from memory_service.instrument import instrument_backend, instrument_embedder
from memory_service.mcp.server import MCPEndpoint, build_mcp
from memory_service.metrics import REQUEST_SECONDS, REQUESTS
from memory_service.ops import OPS_ROUTES
from memory_service.routes import ROUTES
from memory_service.sealing import keyring_from_file
from memory_service.service import MemoryService
from memory_service.settings import MemorySettings

log = logging.getLogger("memory_service")
MAINTENANCE_SECONDS = 60.0


def create_app(
    settings: MemorySettings | None = None,
    *,
    backend: MemoryBackend | None = None,
    embedder: Embedder | None = None,
    authenticator: Authenticator | None = None,
    clock: Clock = now_us,
) -> Starlette:
    """The app for ``settings``; parts can be passed in (tests share one backend, or move
    the clock)."""
    settings = settings or MemorySettings()
    backend = backend or make_backend(settings)
    if settings.sealing_key_file is not None and not isinstance(backend, SealedBackend):
        keyring = keyring_from_file(settings.sealing_key_file, settings.data_dir / "data-keys.json")
        backend = SealedBackend(backend, keyring)
    embedder = embedder or make_embedder(settings)
    authenticator = authenticator or AssertionAuthenticator.from_public_key_file(
        settings.assertion_public_key
    )
    if embedder.dim != settings.embedding_dim:
        raise RuntimeError(
            f"embedder {embedder.model} makes {embedder.dim}-d vectors but "
            f"embedding_dim is {settings.embedding_dim}"
        )
    service = MemoryService(
        instrument_backend(backend), instrument_embedder(embedder), settings, clock
    )
    mcp = build_mcp(service)
    mcp.streamable_http_app()  # creates the session manager the endpoint hands requests to
    mcp_route = Route(MCP_PATH, MCPEndpoint(mcp.session_manager), methods=["GET", "POST", "DELETE"])

    async def maintain_forever() -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            try:
                await backend.maintain()
            except Exception as exc:  # keep serving; the next round retries
                log.warning("backend maintenance failed: %s", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        task = asyncio.create_task(maintain_forever())
        grpc_server = None
        try:
            if settings.grpc_port is not None:  # grpcio only when asked for (the grpc extra)
                from memory_service.grpc.server import start_grpc_server

                grpc_server = await start_grpc_server(
                    service, authenticator, settings.grpc_host, settings.grpc_port
                )
            async with mcp.session_manager.run():
                yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await backend.close()

    routes = [*ROUTES, *OPS_ROUTES, mcp_route]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TracingMiddleware, service="memory"),
            Middleware(
                RequestMetricsMiddleware, routes=routes, requests=REQUESTS, seconds=REQUEST_SECONDS
            ),
            Middleware(
                AuthenticationMiddleware,
                backend=PrincipalBackend(authenticator),
                on_error=on_auth_error,
            ),
            Middleware(NativePanics),
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.service = service
    return app

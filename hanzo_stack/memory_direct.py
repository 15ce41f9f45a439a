"""The memory service without a gateway: the gateway's decision core in front, in-process.

Direct mode (``HANZO_MEMORY_AUTH_MODE=direct``) composes two parts, so it lives here, in the
composition root: ``InlineAuth`` checks API keys and Casdoor JWTs as a gateway would
(configured by ``HANZO_GATEWAY_*``) and hands the memory app the same signed assertion, so
the memory service still sees only its ``Authenticator``.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from hanzo_contract.openapi import MEMORY_OPENAPI_PATH
from memory_service.cli import gateway_app, make_cli
from memory_service.settings import MemorySettings

#: the memory routes that need no credential
OPEN_PATHS = ("/healthz", "/openapi.json", MEMORY_OPENAPI_PATH)


def direct_app(settings: MemorySettings) -> ASGIApp:
    """The memory app behind the in-process decision core."""
    # Imported here so that ``hanzo --help`` does not load the gateway and the memory app.
    from gateway_plugins.build import build_core
    from gateway_plugins.inline import InlineAuth
    from gateway_plugins.settings import GatewaySettings
    from hanzo_contract.request_id import RequestIdMiddleware
    from memory_service.app import create_app

    core = build_core(GatewaySettings())  # makes the assertion key pair if missing
    # the request id first, so a refusal made before the memory app names it too
    return RequestIdMiddleware(InlineAuth(create_app(settings), core, open_paths=OPEN_PATHS))


def memory_app(settings: MemorySettings) -> ASGIApp:
    """What ``hanzo memory-service serve`` serves: direct mode or behind a gateway."""
    return direct_app(settings) if settings.auth_mode == "direct" else gateway_app(settings)


#: ``hanzo memory-service``: the memory service's own commands, serving :func:`memory_app`
memory_service_cli = make_cli(memory_app)

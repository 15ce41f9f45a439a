"""A Casdoor API client for tests, authenticated as the sidecar application.

The stack runner starts Casdoor but never talks to its API; tests that set Casdoor up
by hand (organizations, roles, users) use the sidecar's own client through this.
"""

from __future__ import annotations

from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.casdoor.client import CasdoorClient


def admin_client(server: CasdoorServer, **kwargs: float | int) -> CasdoorClient:
    return CasdoorClient(server.url, server.client_id, server.client_secret, **kwargs)  # type: ignore[arg-type]


def sidecar_casdoor_env(server: CasdoorServer) -> dict[str, str]:
    """A sidecar process's settings for this Casdoor (``hanzo_stack.servers.SidecarServer``)."""
    return {
        "HANZO_SIDECAR_CASDOOR_URL": server.url,
        "HANZO_SIDECAR_CASDOOR_CLIENT_ID": server.client_id,
        "HANZO_SIDECAR_CASDOOR_CLIENT_SECRET": server.client_secret,
    }

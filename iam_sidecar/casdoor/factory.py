"""The one place a :class:`CasdoorClient` is built from sidecar settings."""

from __future__ import annotations

from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.settings import SidecarSettings


def casdoor_client(settings: SidecarSettings) -> CasdoorClient:
    secret = settings.casdoor_client_secret
    return CasdoorClient(
        settings.casdoor_url,
        settings.casdoor_client_id,
        secret.get_secret_value() if secret else "",
        timeout=settings.casdoor_timeout_seconds,
        retries=settings.casdoor_retries,
    )

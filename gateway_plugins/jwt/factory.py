"""The JWT verifier a gateway runs, or none when Casdoor JWTs are not accepted."""

from __future__ import annotations

import logging

from gateway_plugins.jwt.settings import JwtSettings
from gateway_plugins.jwt.verifier import JwtVerifier

log = logging.getLogger(__name__)


def build_jwt_verifier(settings: JwtSettings, timeout: float) -> JwtVerifier | None:
    issuer = settings.issuer()
    if not (settings.casdoor_url and issuer):
        return None
    if not (settings.jwt_audiences or settings.jwt_shared_audiences or settings.jwt_org_audiences):
        log.warning("casdoor_url set but jwt_audiences empty: every JWT will be refused")
    return JwtVerifier(
        settings.casdoor_url,
        issuer,
        settings.jwt_audiences,
        shared_audiences=settings.jwt_shared_audiences,
        org_audiences=settings.jwt_org_audiences,
        leeway=settings.jwt_leeway_seconds,
        refresh_interval=settings.jwks_refresh_interval_seconds,
        timeout=timeout,
    )

"""Assemble a :class:`DecisionCore` from :class:`GatewaySettings`."""

from __future__ import annotations

import logging

from gateway_plugins.audit import DenialReporter
from gateway_plugins.core import DecisionCore
from gateway_plugins.jwt_verifier import JwtVerifier
from gateway_plugins.limiter.base import Limiter
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from gateway_plugins.routes import RouteTable
from gateway_plugins.settings import GatewaySettings
from gateway_plugins.sidecar_client import SidecarClient
from gateway_plugins.usage import UsageReporter
from hanzo_contract.assertion import AssertionSigner, ensure_keypair

log = logging.getLogger(__name__)


def build_limiter(settings: GatewaySettings) -> Limiter:
    if settings.limiter_backend == "redis":
        return RedisLimiter(settings.redis_url, settings.redis_timeout_seconds)
    return MemoryLimiter(settings.resolved_quota_db_path(), settings.quota_flush_seconds)


def build_signer(settings: GatewaySettings) -> AssertionSigner:
    key_file = settings.resolved_assertion_key_file()
    if not key_file.exists():
        ensure_keypair(key_file.parent)
    return AssertionSigner(key_file.read_bytes(), settings.assertion_ttl_seconds)


def build_core(settings: GatewaySettings) -> DecisionCore:
    sidecar = SidecarClient(
        settings.sidecar_url,
        settings.verify_token.get_secret_value(),
        settings.sidecar_timeout_seconds,
    )
    jwt_verifier = None
    issuer = settings.issuer()
    if settings.casdoor_url and issuer:
        if not (settings.jwt_audiences or settings.jwt_shared_audiences):
            log.warning("casdoor_url set but jwt_audiences empty: every JWT will be refused")
        jwt_verifier = JwtVerifier(
            settings.casdoor_url,
            issuer,
            settings.jwt_audiences,
            shared_audiences=settings.jwt_shared_audiences,
            leeway=settings.jwt_leeway_seconds,
            refresh_interval=settings.jwks_refresh_interval_seconds,
            timeout=settings.sidecar_timeout_seconds,
        )
    return DecisionCore(
        routes=RouteTable.load(settings.routes_file),
        keys=sidecar,
        resolver=sidecar,
        jwt_verifier=jwt_verifier,
        limiter=build_limiter(settings),
        signer=build_signer(settings),
        assertion_ttl=settings.assertion_ttl_seconds,
        reporter=DenialReporter(sidecar.report_denial, settings.audit_queue_size),
        usage=UsageReporter(sidecar.report_usage, settings.usage_report_seconds),
        fail_open=settings.limiter_fail_mode == "open",
        limit_levels=tuple(settings.limit_levels),
        positive_cache_max=settings.positive_cache_max_seconds,
        negative_cache=settings.negative_cache_seconds,
        cache_size=settings.cache_size,
    )

"""Assemble a :class:`DecisionCore` from :class:`GatewaySettings`.

Each piece is built by its own factory (``limiter/factory.py``, ``jwt/factory.py``); this
module only wires them to the sidecar client, the signer and the reporters.
"""

from __future__ import annotations

from gateway_plugins.audit import DenialReporter
from gateway_plugins.core import DecisionCore
from gateway_plugins.jwt.factory import build_jwt_verifier
from gateway_plugins.limiter.factory import build_limiter
from gateway_plugins.routes import RouteTable
from gateway_plugins.settings import GatewaySettings
from gateway_plugins.sidecar_client import SidecarClient
from gateway_plugins.usage import UsageReporter
from hanzo_contract.assertion import AssertionSigner, ensure_keypair


def build_signer(settings: GatewaySettings) -> AssertionSigner:
    key_file = settings.resolved_assertion_key_file()
    if not key_file.exists():
        ensure_keypair(key_file.parent)
    return AssertionSigner(key_file.read_bytes(), settings.assertion_ttl_seconds)


def build_core(settings: GatewaySettings) -> DecisionCore:
    sidecar = SidecarClient(
        settings.resolved_sidecar_urls(),
        settings.verify_token.get_secret_value(),
        settings.sidecar_timeout_seconds,
        connect_timeout=settings.sidecar_connect_timeout_seconds,
        backoff=settings.sidecar_backoff_seconds,
    )
    return DecisionCore(
        routes=RouteTable.load(settings.routes_file),
        keys=sidecar,
        resolver=sidecar,
        jwt_verifier=build_jwt_verifier(settings, settings.sidecar_timeout_seconds),
        limiter=build_limiter(settings, settings.resolved_quota_db_path()),
        signer=build_signer(settings),
        assertion_ttl=settings.assertion_ttl_seconds,
        reporter=DenialReporter(sidecar.report_denial, settings.audit_queue_size),
        usage=UsageReporter(sidecar.report_usage, settings.usage_report_seconds),
        fail_mode=settings.limiter_fail_mode,
        local_share=settings.limiter_local_share,
        limit_levels=tuple(settings.limit_levels),
        token_reservation_seconds=settings.token_reservation_seconds,
        positive_cache_max=settings.positive_cache_max_seconds,
        negative_cache=settings.negative_cache_seconds,
        cache_size=settings.cache_size,
    )

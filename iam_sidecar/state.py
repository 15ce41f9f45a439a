"""Everything one running sidecar holds, shared by its routes, its reconcile loop and the CLI."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from hanzo_contract.assertion import SIDECAR_AUDIENCE, AssertionVerifier
from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.casdoor.factory import casdoor_client
from iam_sidecar.casdoor.resolver import OwnerResolver
from iam_sidecar.keys.issuer import KeyIssuer
from iam_sidecar.keys.store import Clock, KeyStore
from iam_sidecar.metrics import SidecarMetrics
from iam_sidecar.records.denials import DenialAggregator, write_buckets
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.tenants.policy import EMPTY_POLICY, TenantPolicy

log = logging.getLogger(__name__)


@dataclass
class SidecarState:
    settings: SidecarSettings
    keys: KeyStore
    casdoor: CasdoorClient
    resolver: OwnerResolver
    issuer: KeyIssuer
    verifier: AssertionVerifier | None
    #: anonymous denials, counted per (source, status, reason, minute) until written
    denials: DenialAggregator
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    policy: TenantPolicy = EMPTY_POLICY
    last_reconcile_error: str | None = None
    #: held by the background loops while they write (usage, denials): shutdown takes it
    #: before it stops them, so a cancel never lands inside a write
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)


def _verifier(settings: SidecarSettings) -> AssertionVerifier | None:
    path = settings.assertion_public_key_path
    if path is None or not path.exists():
        log.warning("no assertion public key at %s: self-service /v1/keys disabled", path)
        return None
    return AssertionVerifier(path.read_bytes(), audience=SIDECAR_AUDIENCE)


async def build_state(
    settings: SidecarSettings, policy: TenantPolicy | None = None, clock: Clock = time.time
) -> SidecarState:
    """Open the key store and the Casdoor client; the caller closes them (``close_state``)."""
    keys = await KeyStore.open(
        settings.store_target,
        settings.hash_secret_bytes,
        clock=clock,
        max_keys_per_owner=settings.max_keys_per_owner,
        migrate_dsn=settings.store_migrate_dsn,
    )
    casdoor = casdoor_client(settings)
    state_box: list[SidecarState] = []
    resolver = OwnerResolver(
        casdoor, lambda: state_box[0].policy, ttl=settings.role_cache_ttl_seconds
    )
    state = SidecarState(
        settings=settings,
        keys=keys,
        casdoor=casdoor,
        resolver=resolver,
        issuer=KeyIssuer(keys, resolver, lambda org: state_box[0].policy.limits_for(org)),
        verifier=_verifier(settings),
        denials=DenialAggregator(clock),
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
    await write_buckets(state.keys.db, state.denials.drain())
    await state.casdoor.aclose()
    await state.keys.close()

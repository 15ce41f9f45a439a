"""Grants the gateway enforces: the organization's bucket at its plan, and the cap on how
long a verified key is believed (the revocation bound).

Over the named ``FakeSidecar`` (the sidecar's side of both is in tests/sidecar).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_plugins.core import DecisionCore
from gateway_plugins.request import AuthRequest
from gateway_plugins.routes import RouteTable
from hanzo_contract.principal import Limits, Principal
from tests.support.clock import FakeClock

from .conftest import FakeSidecar, unit_core

KEYS = ["hk-aaaaaaaaaaaa_" + "A" * 43, "hk-bbbbbbbbbbbb_" + "B" * 43]
PLAN = Limits(requests_per_minute=3)


def _key(index: int, limits: Limits) -> Principal:
    return Principal(
        organization="acme",
        subject="acme/bob",
        scopes=frozenset({"memory:read"}),
        key_id=KEYS[index][3:15],
        limits=limits,
        org_limits=PLAN,
    )


def _req(index: int) -> AuthRequest:
    return AuthRequest("GET", "/v1/memory/retrieve", {"authorization": f"Bearer {KEYS[index]}"})


@pytest.fixture
async def org_core(
    sidecar: FakeSidecar, assertion_keys: tuple[Path, Path], tmp_path: Path, clock: FakeClock
) -> AsyncIterator[DecisionCore]:
    core = unit_core(
        sidecar, assertion_keys, tmp_path, clock, limit_levels=("credential", "organization")
    )
    yield core
    await core.aclose()


async def test_the_organization_bucket_is_charged_at_the_plan(
    org_core: DecisionCore, sidecar: FakeSidecar
) -> None:
    """Two keys of one organization on a 3 rpm plan: however their own limits read (one
    looser than the plan, as a stored key could be before limits only tightened), the
    organization gets 3 requests a minute, not the keys' sum or the loosest key's."""
    sidecar.keys[KEYS[0]] = _key(0, Limits(requests_per_minute=1_000_000_000))
    sidecar.keys[KEYS[1]] = _key(1, Limits(requests_per_minute=2))
    statuses = [(await org_core.decide(_req(i % 2))).status for i in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_a_tight_key_is_not_denied_by_the_organizations_traffic(
    org_core: DecisionCore, sidecar: FakeSidecar
) -> None:
    """A key limited to 1 rpm is charged at 1 for itself; the organization bucket (2
    requests used by another key) still has room at the plan's 3: the key's first passes."""
    sidecar.keys[KEYS[0]] = _key(0, PLAN)
    sidecar.keys[KEYS[1]] = _key(1, Limits(requests_per_minute=1))
    assert [(await org_core.decide(_req(0))).status for _ in range(2)] == [200, 200]
    assert (await org_core.decide(_req(1))).status == 200
    assert (await org_core.decide(_req(1))).status == 429


@pytest.mark.parametrize(("sidecar_ttl", "gateway_max", "bound"), [(3600, 5, 5), (2, 5, 2)])
async def test_a_verified_key_is_believed_no_longer_than_the_revocation_bound(
    assertion_keys: tuple[Path, Path],
    tmp_path: Path,
    sidecar_ttl: float,
    gateway_max: float,
    bound: float,
) -> None:
    """Guard: a cached answer lives ``min(sidecar's cache_ttl_seconds, the gateway's
    positive_cache_max_seconds)``. A sidecar answering an hour, or a gateway allowing
    more than the sidecar says, must not stretch how long a revoked key passes."""
    clock = FakeClock()
    sidecar = FakeSidecar(ttl=sidecar_ttl)
    core = unit_core(sidecar, assertion_keys, tmp_path, clock, positive_cache_max=gateway_max)
    try:
        sidecar.keys[KEYS[0]] = _key(0, PLAN)
        assert (await core.decide(_req(0))).status == 200
        del sidecar.keys[KEYS[0]]  # revoked at the sidecar
        clock.advance(bound - 0.01)
        assert (await core.decide(_req(0))).status == 200  # still the cached answer
        clock.advance(0.01)
        refused = await core.decide(_req(0))
        assert refused.status == 401 and refused.code == "invalid_key"
        assert sidecar.calls == 2
    finally:
        await core.aclose()


def test_a_route_may_require_only_a_registered_scope() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown scope 'memory:teleport'"):
        RouteTable.from_yaml("routes: [{methods: [GET], path: /v1/x, permission: memory:teleport}]")
    for permission in ("memory:read", "authenticated", "null"):
        RouteTable.from_yaml(f"routes: [{{methods: [GET], path: /v1/x, permission: {permission}}}]")
    RouteTable.load(None)  # the bundled table passes

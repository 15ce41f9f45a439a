"""``GET /v1/usage`` for a key's owner: the limits the gateway enforces on the calling
credential and the day's quota left, next to the usage rows it may see."""

from __future__ import annotations

from pathlib import Path

from hanzo_contract.assertion import SIDECAR_AUDIENCE
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Limits, Principal
from tests.sidecar.helpers import ManualClock, make_settings, running_app, signer_for
from tests.support.assertions import placeholder


def _as(signer, principal: Principal) -> dict[str, str]:
    """Signed by the client's hook for the sidecar and the very request it is sent with."""
    sign_for = lambda method, path: signer.sign(  # noqa: E731
        principal, audience=SIDECAR_AUDIENCE, method=method, path=path
    )
    return {ASSERTION: placeholder(sign_for)}


async def test_owner_reads_own_limits_and_remaining(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state")
    clock = ManualClock(1_800_000_030.0)
    async with running_app(settings, clock=clock) as (_, state, client):
        signer = signer_for(settings)
        limits = Limits(requests_per_minute=60, units_per_day=10)
        alice = Principal(
            organization="acme",
            subject="acme/alice",
            scopes=frozenset(),
            key_id="ka",
            limits=limits,
        )
        bob = Principal(organization="acme", subject="acme/bob", scopes=frozenset(), key_id="kb")
        # what the gateway plugin reported: three requests by alice's key, five by bob's
        state.keys.usage.count_requests("acme", "acme/alice", "ka", 3)
        state.keys.usage.count_requests("acme", "acme/bob", "kb", 5)
        # yesterday's requests do not count against today's quota
        clock.advance(-86400)
        state.keys.usage.count_requests("acme", "acme/alice", "ka", 4)
        clock.advance(86400)

        answer = await client.get("/v1/usage", headers=_as(signer, alice))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["credential"] == "key:ka"
        capped = {name: v for name, v in body["limits"].items() if v is not None}
        assert capped == {"requests_per_minute": 60, "units_per_day": 10}
        assert body["remaining_today"] == 7
        # a non-manager sees no one else's rows
        assert {r["subject"] for r in body["usage"]} <= {"acme/alice", "ka"}

        unlimited = (await client.get("/v1/usage", headers=_as(signer, bob))).json()
        assert unlimited["credential"] == "key:kb" and unlimited["remaining_today"] is None

        # quota used up (and beyond, as reports trail the limiter): never negative
        state.keys.usage.count_requests("acme", "acme/alice", "ka", 20)
        spent = (await client.get("/v1/usage", headers=_as(signer, alice))).json()
        assert spent["remaining_today"] == 0


async def test_usage_without_assertion_is_401_json(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state")
    async with running_app(settings) as (_, _state, client):
        answer = await client.get("/v1/usage")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"]

"""No client input gets a 5xx; shared fetches; JWKS refetch limits; audit never blocks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_plugins import metrics
from gateway_plugins.audit import DenialReporter
from gateway_plugins.core import DecisionCore
from gateway_plugins.jwt.verifier import InvalidToken, JwksCache
from gateway_plugins.request import AuthRequest
from hanzo_contract.principal import Limits, Principal
from hanzo_stack.casdoor.server import CasdoorServer

KEY = "hk-abcdefghijkl_" + "A" * 43

header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
credentials = st.one_of(
    st.just(KEY),
    header_values,
    header_values.map(lambda v: "hk-" + v),
    st.builds(lambda a, b: f"{a}.{b}.sig", header_values, header_values),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "get", "X" * 20, ""]),
    uri=st.one_of(
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        st.sampled_from(["/v1/memory/retrieve", "/healthz", "/v1/files/a", "/v1/memory/x"]),
    ),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
    credential=credentials,
    use_x_api_key=st.booleans(),
)
async def test_no_client_input_gets_a_server_error(
    core: DecisionCore,
    sidecar,
    method: str,
    uri: str,
    scheme: str,
    credential: str,
    use_x_api_key: bool,
) -> None:
    sidecar.keys[KEY] = Principal(
        organization="acme",
        subject="acme/alice",
        scopes=frozenset({"memory:read"}),
        key_id="abcdefghijkl",
        limits=Limits(requests_per_minute=1_000_000),
    )
    headers = {"x-api-key": credential} if use_x_api_key else {"authorization": scheme + credential}
    decision = await core.decide(AuthRequest(method, uri, headers))
    assert decision.status in (200, 400, 401, 403, 429)
    if not decision.allowed:
        assert decision.body()["error"]["code"]
        assert credential not in decision.message or len(credential) < 3


async def test_concurrent_misses_share_one_sidecar_call(core: DecisionCore, sidecar) -> None:
    sidecar.keys[KEY] = Principal(organization="acme", subject="acme/a", scopes=frozenset())
    slow = sidecar.verify

    async def slow_verify(key: str) -> Any:
        await asyncio.sleep(0.05)
        return await slow(key)

    sidecar.verify = slow_verify
    request = AuthRequest("GET", "/v1/memory/retrieve", {"x-api-key": KEY})
    results = await asyncio.gather(*[core.decide(request) for _ in range(20)])
    assert {r.status for r in results} == {403}  # no memory:read scope
    assert sidecar.calls == 1


async def test_unknown_kids_refetch_casdoor_jwks_at_most_once_per_interval(
    casdoor: CasdoorServer,
) -> None:
    fetches = 0

    async def count(_: httpx.Request) -> None:
        nonlocal fetches
        fetches += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        jwks = JwksCache(casdoor.jwks_url, refresh_interval=60, http=http)
        assert (await jwks.key("cert-hanzo")).key_id == "cert-hanzo"
        assert fetches == 1
        for i in range(20):
            try:
                await jwks.key(f"forged-{i}")
            except InvalidToken as exc:
                assert exc.code == "invalid_token"
            else:
                raise AssertionError("unknown kid accepted")
        assert fetches == 1  # the first fetch was under a minute ago: no refetch
        assert (await jwks.key("cert-hanzo")).key_id == "cert-hanzo"


async def test_a_key_fetch_cut_off_by_its_caller_is_tried_again_at_once(
    casdoor: CasdoorServer,
) -> None:
    """A JWKS fetch cancelled mid-flight (its requester went away) must not count as the
    interval's fetch: else every token of a new key is refused for the whole interval."""
    gate, fetches = asyncio.Event(), 0

    async def hold_the_first(_: httpx.Request) -> None:
        nonlocal fetches
        fetches += 1
        if fetches == 1:
            await gate.wait()

    async with httpx.AsyncClient(event_hooks={"request": [hold_the_first]}) as http:
        jwks = JwksCache(casdoor.jwks_url, refresh_interval=60, http=http)
        first = asyncio.ensure_future(jwks.key("cert-hanzo"))
        for _ in range(1000):
            if fetches:
                break
            await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        gate.set()
        assert (await jwks.key("cert-hanzo")).key_id == "cert-hanzo"
        assert fetches == 2


async def test_audit_reporting_never_blocks_and_counts_drops() -> None:
    blocked = asyncio.Event()

    async def stuck_sender(_: dict[str, Any]) -> None:
        await blocked.wait()

    reporter = DenialReporter(stuck_sender, max_queue=2)
    before = metrics.AUDIT_DROPPED._value.get()
    started = time.perf_counter()
    for i in range(10):
        reporter.report({"status": 401, "reason": f"r{i}"})
    assert time.perf_counter() - started < 0.05
    await asyncio.sleep(0)  # the drain task takes one event and blocks in the sender
    dropped = metrics.AUDIT_DROPPED._value.get() - before
    assert 7 <= dropped <= 8
    await reporter.aclose(grace=0.1)

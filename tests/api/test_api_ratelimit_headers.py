"""RateLimit and RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers) on every allowed
answer, not only on 429s: in the core, and through real nginx and real Caddy."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml

from gateway_plugins.request import AuthRequest
from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_contract.principal import Limits, Principal
from hanzo_stack.servers import DEPLOY_DIR
from tests.support.clock import wait_for_window_room

GATEWAYS = ["nginx", "caddy"]
KEY = "hk-" + "r" * 43
#: ``"<policy>";r=<remaining>;t=<seconds to reset>`` (draft -08 to -11)
RATELIMIT = re.compile(r'^"(?P<policy>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _principal(limits: Limits) -> Principal:
    return Principal(
        organization="acme",
        subject="acme/alice",
        scopes=["memory:read"],
        key_id="k1",
        limits=limits,
    )


def _req() -> AuthRequest:
    return AuthRequest("GET", "/v1/memory/retrieve", {"x-api-key": KEY})


async def test_core_allow_carries_ratelimit_for_the_client_not_the_upstream(
    core, sidecar, clock
) -> None:
    sidecar.keys[KEY] = _principal(Limits(requests_per_minute=5, units_per_day=100))
    first = await core.decide(_req())
    second = await core.decide(_req())
    assert first.allowed and second.allowed
    # the tightest window: 5 a minute beats 100 a day
    assert first.client_headers["RateLimit"] == '"key-minute";r=4;t=30'
    assert second.client_headers["RateLimit"] == '"key-minute";r=3;t=30'
    assert second.client_headers["RateLimit-Policy"] == (
        '"key-minute";q=5;w=60, "key-day";q=100;w=86400'
    )
    # the upstream gets the identity headers only
    assert set(second.headers) == set(IDENTITY_HEADERS)
    clock.advance(30)  # the next minute: a fresh window
    third = await core.decide(_req())
    assert third.client_headers["RateLimit"] == '"key-minute";r=4;t=60'


async def test_core_unlimited_key_gets_no_ratelimit_headers(core, sidecar) -> None:
    sidecar.keys[KEY] = _principal(Limits())
    decision = await core.decide(_req())
    assert decision.allowed and decision.client_headers == {}


async def test_core_429_names_the_full_window(core, sidecar) -> None:
    sidecar.keys[KEY] = _principal(Limits(units_per_day=2))
    for _ in range(2):
        assert (await core.decide(_req())).allowed
    denied = await core.decide(_req())
    assert denied.status == 429
    assert denied.headers["RateLimit"] == '"key-day";r=0;t=57570'
    assert denied.headers["RateLimit-Policy"] == '"key-day";q=2;w=86400'
    assert denied.headers["Retry-After"] == "57570"


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_allowed_answers_carry_ratelimit_through_the_gateway(
    stack, http, gateway: str
) -> None:
    key, _ = await stack.mint(limits=Limits(requests_per_minute=3))
    await wait_for_window_room(15)  # the real clock: every request in one UTC minute
    url = stack.front(gateway) + "/v1/memory/retrieve"
    remaining = []
    for _ in range(3):
        r = await http.get(url, headers={"X-API-Key": key, "RateLimit": '"x";r=999;t=1'})
        assert r.status_code == 200, r.text
        assert r.headers.get_list("ratelimit-policy") == ['"key-minute";q=3;w=60']
        values = r.headers.get_list("ratelimit")
        assert len(values) == 1, values
        match = RATELIMIT.match(values[0])
        assert match and match["policy"] == "key-minute", values
        assert 1 <= int(match["t"]) <= 60
        remaining.append(int(match["r"]))
        # the request id still comes back on allowed answers
        assert r.headers.get("x-request-id")
        # the plugin's answer for the client never reaches the upstream
        seen = {name.lower() for name, _ in r.json()["headers"]}
        assert not {"x-hanzo-ratelimit", "x-hanzo-ratelimit-policy", "ratelimit-policy"} & seen
    assert remaining == [2, 1, 0]
    refused = await http.get(url, headers={"X-API-Key": key})
    assert refused.status_code == 429
    assert RATELIMIT.match(refused.headers["ratelimit"])["r"] == "0"
    assert refused.headers["ratelimit-policy"] == '"key-minute";q=3;w=60'


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_unlimited_key_gets_no_ratelimit_header(stack, http, gateway: str) -> None:
    key, _ = await stack.mint()
    r = await http.get(
        stack.front(gateway) + "/v1/memory/retrieve",
        headers={
            "X-API-Key": key,
            "RateLimit": '"forged";r=1;t=1',
            # the name Caddy carries the plugin's answer under: a client's own never counts
            "X-Hanzo-RateLimit": '"forged";r=1;t=1',
        },
    )
    assert r.status_code == 200, r.text
    assert "ratelimit" not in r.headers and "ratelimit-policy" not in r.headers, r.headers.raw


def test_envoy_config_passes_ratelimit_to_the_client_on_allow() -> None:
    """Envoy does not run here: its shipped config is checked for the fields instead."""
    conf = yaml.safe_load((DEPLOY_DIR / "envoy" / "envoy.yaml").read_text())
    hcm = conf["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    authz = hcm["typed_config"]["http_filters"][0]["typed_config"]
    answer = authz["http_service"]["authorization_response"]
    on_allow = {p["exact"] for p in answer["allowed_client_headers_on_success"]["patterns"]}
    assert on_allow == {"ratelimit", "ratelimit-policy"}
    upstream = {p["exact"] for p in answer["allowed_upstream_headers"]["patterns"]}
    assert not upstream & on_allow


async def test_inline_middleware_puts_ratelimit_on_the_apps_answer(core, sidecar) -> None:
    """A service run without a gateway (``InlineAuth``): the app's own RateLimit loses."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gateway_plugins.inline import InlineAuth

    async def retrieve(_request) -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"RateLimit": '"app";r=999;t=1'})

    app = Starlette(routes=[Route("/v1/memory/retrieve", retrieve)])
    sidecar.keys[KEY] = _principal(Limits(requests_per_minute=5))
    transport = httpx.ASGITransport(app=InlineAuth(app, core))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        answer = await client.get("/v1/memory/retrieve", headers={"X-API-Key": KEY})
    assert answer.status_code == 200
    assert answer.headers.get_list("ratelimit") == ['"key-minute";r=4;t=30']
    assert answer.headers["ratelimit-policy"] == '"key-minute";q=5;w=60'

"""The forward-auth service's dialects (nginx, Traefik/Caddy/APISIX, Envoy) over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway_plugins.core import DecisionCore
from gateway_plugins.forward_auth import create_app
from hanzo_contract.headers import DECISION_ID
from hanzo_contract.principal import Principal
from tests.gateway.conftest import ALICE_KEY

KEY = ALICE_KEY


@pytest.fixture
async def client(core: DecisionCore, alice: Principal) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(core))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as c:
        yield c


def fwd(method: str, uri: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-API-Key": KEY, **extra}


async def test_traefik_caddy_apisix_dialect(client: httpx.AsyncClient) -> None:
    r = await client.get("/auth", headers=fwd("GET", "/v1/memory/retrieve?x=1"))
    assert r.status_code == 200
    assert r.headers["x-user-id"] == "acme/alice" and r.headers["x-hanzo-identity"]
    r = await client.get("/auth", headers=fwd("GET", "/v1/memory/retrieve"))
    assert r.status_code == 429 and r.headers["retry-after"]
    assert r.json()["error"]["code"] == "rate_limited"


async def test_nginx_dialect_turns_429_into_403_with_the_real_status(
    client: httpx.AsyncClient,
) -> None:
    headers = {"X-Original-Method": "GET", "X-Original-URI": "/v1/memory/retrieve"}
    headers["X-API-Key"] = KEY
    assert (await client.get("/auth/nginx", headers=headers)).status_code == 200
    r = await client.get("/auth/nginx", headers=headers)
    assert r.status_code == 403
    assert r.headers["x-hanzo-status"] == "429"
    assert '"rate_limited"' in r.headers["x-hanzo-error"]
    assert r.headers["retry-after"]


async def test_envoy_dialect_uses_method_and_prefixed_path(client: httpx.AsyncClient) -> None:
    r = await client.get("/envoy/v1/memory/retrieve?q=1", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.headers["x-org-id"] == "acme"
    r = await client.post("/envoy/v1/memory/retrieve", headers={"X-API-Key": KEY})
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"


async def test_each_endpoint_reads_only_its_own_dialect(client: httpx.AsyncClient) -> None:
    nginx_style = {"X-Original-Method": "GET", "X-Original-URI": "/healthz", "X-API-Key": KEY}
    r = await client.get("/auth", headers=nginx_style)
    assert r.status_code == 400
    r = await client.get("/auth/nginx", headers=fwd("GET", "/healthz"))
    assert r.status_code == 403 and r.headers["x-hanzo-status"] == "400"


async def test_missing_original_request_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/auth", headers={"X-API-Key": KEY})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_original_request"


async def test_unknown_endpoint_is_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_nginx_retry_with_its_decision_id_is_counted_once(
    client: httpx.AsyncClient,
) -> None:
    """nginx asks the other plugin after one counted and timed out, with the same
    ``$request_id`` in X-Hanzo-Decision-Id: the first answer again, nothing counted."""
    nginx = {"X-Original-Method": "GET", "X-Original-URI": "/v1/memory/retrieve"}
    nginx["X-API-Key"] = KEY  # its key allows one request a minute
    first = await client.get("/auth/nginx", headers={**nginx, DECISION_ID: "a" * 32})
    again = await client.get("/auth/nginx", headers={**nginx, DECISION_ID: "a" * 32})
    assert first.status_code == again.status_code == 200
    assert again.headers["ratelimit-remaining"] == first.headers["ratelimit-remaining"] == "0"
    # a new request (nginx makes a new id) finds the minute's one request spent
    other = await client.get("/auth/nginx", headers={**nginx, DECISION_ID: "b" * 32})
    assert other.headers["x-hanzo-status"] == "429"


async def test_a_client_repeating_an_id_is_counted_every_time(client: httpx.AsyncClient) -> None:
    """Ids a client can choose never dedup: its own X-Request-Id (any dialect), and a
    decision id sent to a dialect whose gateway does not overwrite that header."""
    same = {"X-Request-Id": "my-fixed-id", DECISION_ID: "c" * 32}
    assert (
        await client.get("/auth", headers=fwd("GET", "/v1/memory/retrieve", **same))
    ).status_code == 200
    again = await client.get("/auth", headers=fwd("GET", "/v1/memory/retrieve", **same))
    assert again.status_code == 429
    nginx = {"X-Original-Method": "GET", "X-Original-URI": "/v1/memory/retrieve", "X-API-Key": KEY}
    replay = await client.get("/auth/nginx", headers={**nginx, "X-Request-Id": "my-fixed-id"})
    assert replay.headers["x-hanzo-status"] == "429"


async def test_auth_answers_carry_the_callers_request_id_only_when_it_is_safe(
    client: httpx.AsyncClient,
) -> None:
    """The hot path reads X-Request-Id in its one pass over the headers (not through
    ``RequestIdMiddleware``): a plain token is echoed, in the answer and in the error
    body; anything else, or none, gets a new id."""
    import re

    made = re.compile(r"[0-9a-f]{32}")
    nginx = {"X-Original-Method": "GET", "X-Original-URI": "/v1/memory/retrieve"}
    mine = await client.get("/auth/nginx", headers={**nginx, "X-Request-Id": "client-42.a:b"})
    assert mine.status_code == 401 and mine.headers["x-request-id"] == "client-42.a:b"
    assert mine.json()["error"]["request_id"] == "client-42.a:b"
    bad = await client.get("/auth/nginx", headers={**nginx, "X-Request-Id": 'x"},{"e":1'})
    assert made.fullmatch(bad.headers["x-request-id"])
    assert bad.json()["error"]["request_id"] == bad.headers["x-request-id"]
    none = await client.get("/auth", headers=fwd("GET", "/v1/memory/retrieve"))
    assert none.status_code == 200 and made.fullmatch(none.headers["x-request-id"])

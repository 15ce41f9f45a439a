"""End to end through real nginx and real Caddy: sidecar, forward-auth, echo upstream."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import httpx
import pytest

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionVerifier
from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_contract.principal import Limits
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.servers import NginxServer
from tests.gateway.conftest import INSTALLED_GATEWAYS
from tests.support.clock import wait_for_window_room

#: the hand-configured gateways, and the same ones (plus Traefik, built from its Go
#: module) run from what ``hanzo gateway install`` wrote into a fresh directory
GATEWAYS = ["nginx", "caddy", *(f"{name}-installed" for name in INSTALLED_GATEWAYS)]

#: real nginx, forward-auth and sidecar processes on a loaded two-core machine: the
#: revocation bound is the cache's (``test_gw_core`` checks it exactly on a driven clock);
#: this is what scheduling may add on top of it
PROCESS_SLACK = 3.0


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    """What the echo upstream received, lower-cased names, every value kept."""
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]["code"]


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_valid_key_reaches_upstream_with_identity_and_assertion(
    stack, http, gateway: str
) -> None:
    key, key_id = await stack.mint(scopes=("memory:read",))
    r = await http.get(stack.front(gateway) + "/v1/memory/retrieve?q=x", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    seen = upstream_headers(r)
    assert seen["x-user-id"] == ["acme/alice"]
    assert seen["x-org-id"] == ["acme"]
    assert seen["x-key-id"] == [key_id]
    assert seen["x-scopes"] == ["memory:read"]
    # bound to the memory service and to this request, as the gateway forwarded it
    verifier = AssertionVerifier(stack.public_key, audience=MEMORY_AUDIENCE)
    principal = verifier.verify(seen["x-hanzo-identity"][0], "GET", "/v1/memory/retrieve")
    assert principal.subject == "acme/alice" and principal.key_id == key_id
    assert r.json()["path"] == "/v1/memory/retrieve"


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_client_sent_identity_headers_never_reach_upstream(stack, http, gateway: str) -> None:
    key, _ = await stack.mint()
    forged = {h: "forged" for h in IDENTITY_HEADERS}
    forged["X-User-Id"] = "evil/root"
    r = await http.get(
        stack.front(gateway) + "/v1/memory/retrieve",
        headers={**forged, "Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200
    seen = upstream_headers(r)
    assert seen["x-user-id"] == ["acme/alice"]
    for name in IDENTITY_HEADERS:
        assert "forged" not in seen.get(name.lower(), []), name
    # public route: no identity at all, and still nothing forged passes
    r = await http.get(stack.front(gateway) + "/healthz", headers=forged)
    assert r.status_code == 200
    seen = upstream_headers(r)
    for name in IDENTITY_HEADERS:
        assert seen.get(name.lower(), [""]) == [""], name


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_client_cannot_pick_the_path_it_is_judged_on(stack, http, gateway: str) -> None:
    forged = {
        "X-Forwarded-Uri": "/healthz",
        "X-Forwarded-Method": "GET",
        "X-Original-URI": "/healthz",
        "X-Original-Method": "GET",
    }
    r = await http.get(stack.front(gateway) + "/v1/memory/retrieve", headers=forged)
    assert r.status_code == 401 and error_code(r) == "missing_credential"


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_missing_or_wrong_key_is_401(stack, http, gateway: str) -> None:
    r = await http.get(stack.front(gateway) + "/v1/memory/retrieve")
    assert r.status_code == 401 and error_code(r) == "missing_credential"
    assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = "hk-AAAAAAAAAAAA_" + "x" * 43
    r = await http.get(stack.front(gateway) + "/v1/memory/retrieve", headers={"X-API-Key": wrong})
    assert r.status_code == 401 and error_code(r) == "invalid_key"
    assert wrong not in r.text
    r = await http.get(
        stack.front(gateway) + "/v1/memory/retrieve", headers={"Authorization": "Bearer junk"}
    )
    assert r.status_code == 401


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_missing_permission_and_unknown_route_are_403(stack, http, gateway: str) -> None:
    key, _ = await stack.mint(scopes=("memory:read",))
    r = await http.post(
        stack.front(gateway) + "/v1/memory/store", headers={"X-API-Key": key}, json={}
    )
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await http.get(stack.front(gateway) + "/v1/admin", headers={"X-API-Key": key})
    assert r.status_code == 403 and error_code(r) == "route_not_allowed"


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_over_the_limit_is_429_with_retry_after(stack, http, gateway: str) -> None:
    key, _ = await stack.mint(limits=Limits(requests_per_minute=3))
    await wait_for_window_room(15)  # the real clock: all four requests in one UTC minute
    url = stack.front(gateway) + "/v1/memory/retrieve"
    statuses = [(await http.get(url, headers={"X-API-Key": key})).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = await http.get(url, headers={"X-API-Key": key})
    assert r.status_code == 429
    assert error_code(r) == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["ratelimit-limit"] == "3"
    assert r.headers["ratelimit-remaining"] == "0"


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_revoked_key_is_401_within_the_bound(stack, http, gateway: str) -> None:
    key, key_id = await stack.mint()
    url = stack.front(gateway) + "/v1/memory/retrieve"
    assert (await http.get(url, headers={"X-API-Key": key})).status_code == 200  # now cached
    await stack.revoke(key_id)
    revoked_at = time.monotonic()
    while True:
        r = await http.get(url, headers={"X-API-Key": key})
        elapsed = time.monotonic() - revoked_at
        if r.status_code == 401:
            break
        assert r.status_code == 200
        assert elapsed < stack.revocation_bound + PROCESS_SLACK, "revoked key still passing"
        await asyncio.sleep(0.05)
    assert error_code(r) == "revoked_key"
    assert elapsed <= stack.revocation_bound + PROCESS_SLACK


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_dot_segments_are_refused(stack, http, gateway: str) -> None:
    key, _ = await stack.mint()
    # raw path, so neither the client nor the gateway normalises it before the plugin sees it
    r = await http.get(stack.front(gateway) + "/v1/memory/%2e%2e/admin", headers={"X-API-Key": key})
    if gateway.startswith("traefik"):
        # Traefik cleans the path before routing and auth: the plugin judges /v1/admin, the
        # path an upstream would get, and it is no route
        assert r.status_code == 403 and error_code(r) == "route_not_allowed"
        return
    assert r.status_code == 400
    assert error_code(r) == "invalid_path"


async def test_metrics_count_decisions(stack, http) -> None:
    key, _ = await stack.mint()
    await http.get(stack.nginx.url + "/v1/memory/retrieve", headers={"X-API-Key": key})
    text = (await http.get(stack.auth.url + "/metrics")).text
    assert 'hanzo_gateway_decisions_total{outcome="allow",status="200"}' in text
    assert "hanzo_gateway_decision_seconds_bucket" in text
    assert 'hanzo_gateway_cache_lookups_total{cache="key",result="hit"}' in text


async def test_denials_reach_the_sidecar_audit_log(stack, http) -> None:
    key, key_id = await stack.mint(scopes=("memory:read",))
    r = await http.delete(stack.nginx.url + "/v1/memory/some-id", headers={"X-API-Key": key})
    assert r.status_code == 403
    deadline = time.monotonic() + 5
    rows: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline and not rows:
        with contextlib.closing(sqlite3.connect(stack.sidecar.db_path)) as db:
            rows = db.execute(
                "SELECT outcome, organization, target FROM audit_log"
                " WHERE action = 'request.denied' AND details LIKE ?",
                (f"%{key_id}%",),
            ).fetchall()
        await asyncio.sleep(0.05)
    assert rows == [("403:forbidden", "acme", "DELETE /v1/memory/some-id")]


async def test_allowed_requests_reach_the_sidecar_usage_counters(stack, http) -> None:
    key, key_id = await stack.mint(scopes=("memory:read",))
    for _ in range(3):
        r = await http.get(stack.nginx.url + "/v1/memory/retrieve", headers={"X-API-Key": key})
        assert r.status_code == 200
    deadline = time.monotonic() + 5
    rows: list[tuple[int]] = []
    while time.monotonic() < deadline and rows != [(3,)]:
        await asyncio.sleep(0.1)
        with contextlib.closing(sqlite3.connect(stack.sidecar.db_path)) as db:
            rows = db.execute(
                "SELECT requests FROM usage_daily WHERE level = 'key' AND subject LIKE ?",
                (f"%{key_id}%",),
            ).fetchall()
    assert rows == [(3,)]  # counted once each, although the key was verified only once


async def test_auth_service_down_is_503_through_nginx(stack, http, tmp_path) -> None:
    dead = f"{LOOPBACK}:{free_port()}"
    nginx = NginxServer(tmp_path / "nginx-dead", dead, stack.upstream.addr).start()
    try:
        r = await http.get(nginx.url + "/v1/memory/retrieve", headers={"X-API-Key": "hk-x"})
        assert r.status_code == 503 and error_code(r) == "auth_unavailable"
        assert r.headers["retry-after"] == "1"
    finally:
        nginx.stop()


@pytest.mark.parametrize("gateway", [f"{name}-installed" for name in INSTALLED_GATEWAYS])
async def test_installed_body_limit_is_413(stack, http, gateway: str) -> None:
    """``--body-limit-mb 1`` (conftest's install): a 2 MiB body never reaches the upstream."""
    key, _ = await stack.mint(scopes=("memory:read", "memory:write"))
    url = stack.front(gateway) + "/v1/memory/store"
    r = await http.post(url, headers={"X-API-Key": key}, content=b"x" * (2 << 20))
    assert r.status_code == 413
    if not gateway.startswith("traefik"):  # Traefik's own 413 is a plain-text line
        assert error_code(r) == "body_too_large"
    small = await http.post(url, headers={"X-API-Key": key}, content=b"x" * 1000)
    assert small.status_code == 200 and small.json()["path"] == "/v1/memory/store"

"""Hostile requests through real nginx and real Caddy: spellings of identity headers,
request ids, and the errors the gateways make themselves, all as the JSON error body."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.servers import CaddyServer, NginxServer
from tests.gateway.test_gw_e2e import upstream_headers

GATEWAYS = ["nginx", "caddy"]
#: nginx's $request_id (32 hex) or Caddy's {http.request.uuid}
MADE_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def spellings(name: str) -> list[str]:
    """Spellings a proxy or upstream may fold into ``name``, other than ``name`` itself."""
    under = name.replace("-", "_")
    first, _, rest = name.partition("-")
    return [under, under.lower(), under.upper(), f"{first}_{rest}", name.lower()]


def json_error(r: httpx.Response, status: int, code: str) -> dict:
    """The shared error body, with the request id the response header names."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == r.headers["x-request-id"], (error, r.headers)
    return error


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_identity_headers_in_any_spelling_never_reach_upstream(stack, http, gateway):
    key, _ = await stack.mint()
    forged = {s: "forged" for name in IDENTITY_HEADERS for s in spellings(name)}
    r = await http.get(
        stack.front(gateway) + "/v1/memory/retrieve",
        headers={**forged, "Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    seen = upstream_headers(r)
    assert seen["x-org-id"] == ["acme"]
    leaked = {k: v for k, v in seen.items() if "forged" in v}
    assert not leaked, leaked
    assert not [k for k in seen if "_" in k], seen  # both drop every "_" header name


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_request_id_made_returned_and_passed_on(stack, http, gateway):
    key, _ = await stack.mint()
    url = stack.front(gateway) + "/v1/memory/retrieve"
    r = await http.get(url, headers={"X-API-Key": key})
    made = r.headers["x-request-id"]
    assert MADE_ID.fullmatch(made), made
    assert upstream_headers(r)["x-request-id"] == [made]
    mine = await http.get(url, headers={"X-API-Key": key, "X-Request-Id": "client-42.a:b"})
    assert mine.headers["x-request-id"] == "client-42.a:b"
    assert upstream_headers(mine)["x-request-id"] == ["client-42.a:b"]
    # an id that could break a log line or a JSON body is replaced, never echoed
    bad = await http.get(url, headers={"X-API-Key": key, "X-Request-Id": 'x"},{"evil":1'})
    assert MADE_ID.fullmatch(bad.headers["x-request-id"])
    assert upstream_headers(bad)["x-request-id"] == [bad.headers["x-request-id"]]
    # the plugin's own refusals carry it too
    json_error(await http.get(url), 401, "missing_credential")
    refused = await http.get(url, headers={"X-Request-Id": "trace-7"})
    assert json_error(refused, 401, "missing_credential")["request_id"] == "trace-7"


async def test_nginx_own_errors_are_json_with_request_id(stack, http, tmp_path: Path):
    key, _ = await stack.mint(scopes=("memory:read", "memory:write"))
    url = stack.nginx.url + "/v1/memory/store"
    # 413: over nginx's client_max_body_size (1 MiB by default in this config)
    big = await http.post(url, headers={"X-API-Key": key}, content=b"x" * (2 << 20))
    json_error(big, 413, "body_too_large")
    # 400: a header nginx cannot hold (494 inside nginx)
    huge = await http.get(url, headers={"X-API-Key": key, "X-Big": "y" * 20_000})
    json_error(huge, 400, "bad_request")
    # 502: the upstream is gone
    dead = f"{LOOPBACK}:{free_port()}"
    nginx = NginxServer(tmp_path / "nginx-dead", stack.auth.addr, dead).start()
    try:
        r = await http.get(nginx.url + "/v1/memory/retrieve", headers={"X-API-Key": key})
        json_error(r, 502, "bad_gateway")
    finally:
        nginx.stop()
    # 503: the auth service is gone (nginx's failed subrequest)
    nginx = NginxServer(tmp_path / "nginx-noauth", f"{LOOPBACK}:{free_port()}", dead).start()
    try:
        r = await http.get(nginx.url + "/v1/memory/retrieve", headers={"X-API-Key": key})
        json_error(r, 503, "auth_unavailable")
    finally:
        nginx.stop()


async def test_caddy_own_errors_are_json_with_request_id(stack, http, tmp_path: Path):
    key, _ = await stack.mint()
    dead = f"{LOOPBACK}:{free_port()}"
    caddy = CaddyServer(tmp_path / "caddy-dead", stack.auth.addr, dead).start()
    try:
        r = await http.get(caddy.url + "/v1/memory/retrieve", headers={"X-API-Key": key})
        json_error(r, 502, "bad_gateway")
    finally:
        caddy.stop()
    caddy = CaddyServer(tmp_path / "caddy-noauth", f"{LOOPBACK}:{free_port()}", dead).start()
    try:
        r = await http.get(caddy.url + "/v1/memory/retrieve", headers={"X-Request-Id": "t-1"})
        assert json_error(r, 502, "bad_gateway")["request_id"] == "t-1"
    finally:
        caddy.stop()


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_client_x_forwarded_for_never_becomes_the_audit_source(stack, http, gateway):
    """A client's X-Forwarded-For reaches neither the audit log (the denial's source) nor
    the upstream as its client address: each hop writes the peer it saw."""
    key, key_id = await stack.mint(scopes=("memory:read",))
    lie = {"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.67"}
    base = stack.front(gateway)
    r = await http.delete(base + "/v1/memory/xff-probe", headers={**lie, "X-API-Key": key})
    assert r.status_code == 403
    ok = await http.get(base + "/v1/memory/retrieve", headers={**lie, "X-API-Key": key})
    seen = upstream_headers(ok)
    assert "203.0.113" not in str(seen.get("x-forwarded-for")), seen
    assert "203.0.113" not in str(seen.get("x-real-ip")), seen
    deadline = time.monotonic() + 5
    rows: list[tuple[str]] = []
    while time.monotonic() < deadline and not rows:
        await asyncio.sleep(0.05)
        with contextlib.closing(sqlite3.connect(stack.sidecar.db_path)) as db:
            rows = db.execute(
                "SELECT source FROM audit_log WHERE action = 'request.denied' AND details LIKE ?",
                (f"%{key_id}%",),
            ).fetchall()
    assert rows == [(LOOPBACK,)]


async def test_nginx_request_line_errors_are_json(stack, http):
    """A URI too long for nginx's request line (414, before there is a URI to redirect
    with) and a request line it cannot parse (400) are JSON too, not nginx's 500 page."""
    key, _ = await stack.mint()
    deep = '{"a":' * 1000 + "1" + "}" * 1000
    r = await http.get(stack.nginx.url + "/v1/memory/retrieve", params={"metadata": deep},
                       headers={"X-API-Key": key})  # fmt: skip
    json_error(r, 414, "uri_too_long")
    host, port = stack.nginx.addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /v1/memory/retrieve HTTP/1.1 junk\r\nHost: x\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"application/json" in head and b'"code":"bad_request"' in body, raw
    # the internal error locations are not routes a client can call
    assert (await http.get(stack.nginx.url + "/_hanzo_error/400")).status_code != 400

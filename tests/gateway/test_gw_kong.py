"""The Kong plugin in the PDK's real plugin server, driven by KongRpcHarness.

KongRpcHarness is a test harness that plays Kong's side of the MessagePack RPC (Kong itself
cannot run here); the plugin server, the plugin and the sidecar behind it are all real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionVerifier
from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_contract.principal import Limits
from hanzo_stack.process import ManagedProcess
from tests.support.clock import wait_for_window_room
from tests.support.kong_harness import KongOutcome, KongRequest, KongRpcHarness

NAME = "hanzo-auth"


@pytest.fixture(scope="module", params=["python-style", "lua-style"])
def plugin_server(
    request: pytest.FixtureRequest,
    stack,
    make_gateway_env,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path]]:
    """The plugin server as Kong starts it; both PDK return styles (lua-style is the
    server's default: every PDK call answers ``(data, err)``)."""
    work = tmp_path_factory.mktemp("kong")
    prefix = work / "prefix"
    prefix.mkdir()
    env = make_gateway_env(stack.sidecar, work)
    argv = [sys.executable, "-m", "gateway_plugins.kong", "-p", str(prefix)]
    if request.param == "python-style":
        argv.append("--no-lua-style")
    process = ManagedProcess("kong-plugin-server", argv, log_path=work / "ps.log", env=env)
    sock = prefix / f"{NAME}.sock"
    process.start().wait_ready(sock.exists, 30)
    try:
        yield sock, work / "state" / "assertion.pub"
    finally:
        process.stop()


@pytest.fixture
def kong(plugin_server) -> Iterator[tuple[KongRpcHarness, int]]:
    harness = KongRpcHarness(str(plugin_server[0]))
    try:
        yield harness, harness.start_instance(NAME, {})
    finally:
        harness.close()


def body_code(outcome: KongOutcome) -> str:
    assert outcome.exit_body is not None
    return json.loads(outcome.exit_body)["error"]["code"]


def test_dump_reports_the_plugin_to_kong() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway_plugins.kong", "--dump"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    info = json.loads(out)[0]
    assert info["Name"] == NAME and info["Phases"] == ["access"]
    assert info["Priority"] == 1300


async def test_valid_key_sets_identity_headers_and_assertion(stack, kong, plugin_server) -> None:
    harness, iid = kong
    key, key_id = await stack.mint()
    outcome = harness.access(
        iid,
        KongRequest(
            "GET",
            "/v1/memory/retrieve?q=1",
            {"Authorization": f"Bearer {key}", "X-User-Id": "evil/root"},
        ),
    )
    assert outcome.exit_status is None
    assert set(outcome.upstream_headers) == set(IDENTITY_HEADERS)
    assert outcome.upstream_headers["X-User-Id"] == "acme/alice"  # the forged one is replaced
    assert outcome.upstream_headers["X-Key-Id"] == key_id
    verifier = AssertionVerifier(plugin_server[1].read_bytes(), audience=MEMORY_AUDIENCE)
    token = outcome.upstream_headers["X-Hanzo-Identity"]
    assert verifier.verify(token, "GET", "/v1/memory/retrieve").key_id == key_id


def test_missing_key_exits_401_with_json(kong) -> None:
    harness, iid = kong
    outcome = harness.access(iid, KongRequest("GET", "/v1/memory/retrieve"))
    assert outcome.exit_status == 401
    assert body_code(outcome) == "missing_credential"
    assert outcome.exit_headers["Content-Type"] == "application/json"
    assert outcome.upstream_headers == {}


async def test_missing_permission_exits_403(stack, kong) -> None:
    harness, iid = kong
    key, _ = await stack.mint(scopes=("memory:read",))
    outcome = harness.access(iid, KongRequest("DELETE", "/v1/memory/abc", {"X-API-Key": key}))
    assert outcome.exit_status == 403 and body_code(outcome) == "forbidden"


async def test_over_the_limit_exits_429_with_retry_after(stack, kong) -> None:
    harness, iid = kong
    key, _ = await stack.mint(limits=Limits(requests_per_minute=2))
    await wait_for_window_room(15)  # the real clock: all three requests in one UTC minute
    request = KongRequest("GET", "/v1/memory/retrieve", {"X-API-Key": key})
    allowed = [harness.access(iid, request) for _ in range(2)]
    assert [a.exit_status for a in allowed] == [None, None]
    # the RateLimit headers go on the client's answer, not to the upstream
    assert [a.client_headers["RateLimit"].split(";t=")[0] for a in allowed] == [
        '"key-minute";r=1',
        '"key-minute";r=0',
    ]
    assert "RateLimit" not in allowed[0].upstream_headers
    outcome = harness.access(iid, request)
    assert outcome.exit_status == 429 and body_code(outcome) == "rate_limited"
    assert int(outcome.exit_headers["Retry-After"]) >= 1

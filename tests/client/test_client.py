"""The Python client without a stack: the same calls sync and async, the 429 pacing, errors
that keep ``details`` and the request id, the README's ``tag`` filter, credentials that
follow a local stack, and the build progress lines.

``FakeGateway`` stands in for the gateway where a test must script the exact reply sequence
(a 429 and then a success) that the real limiter only gives after a real minute; the real
limiter's 429 is tested in tests/e2e/test_cli.py."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import sys
from pathlib import Path

import httpx
import pytest
import typer

from hanzo_client import AsyncHanzoClient, HanzoAPIError, HanzoClient, HanzoConnectionError, calls
from hanzo_client.credentials import Credentials
from hanzo_stack.casdoor.build_progress import run_logged


class FakeGateway:
    """Scripted replies, in order; records each request."""

    def __init__(self, *replies: httpx.Response) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0)


def limited(retry_after: str) -> httpx.Response:
    body = {"error": {"code": "rate_limited", "message": "slow down"}}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


def ok_page() -> httpx.Response:
    return httpx.Response(200, json={"memories": [{"id": "m1"}], "next_cursor": None})


def public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")}


def test_sync_and_async_clients_have_the_same_calls() -> None:
    assert public(HanzoClient) - {"close"} == public(AsyncHanzoClient) - {"aclose"}
    for name in ("list", "iter_memories", "update", "export", "import_", "rotate_key", "usage"):
        assert name in public(HanzoClient)


def test_a_429_is_waited_out_then_the_call_succeeds_sync_and_async() -> None:
    fake = FakeGateway(limited("2"), limited("1"), ok_page())
    waits: list[float] = []
    with HanzoClient(
        "http://gw", "hk-x", transport=httpx.MockTransport(fake), sleep=waits.append
    ) as client:
        assert client.list().memories == [{"id": "m1"}]
    assert waits == [2.0, 1.0] and len(fake.requests) == 3

    afake = FakeGateway(limited("3"), ok_page())
    awaits: list[float] = []

    async def record(seconds: float) -> None:
        awaits.append(seconds)

    async def go() -> None:
        async with AsyncHanzoClient(
            "http://gw", "hk-x", transport=httpx.MockTransport(afake), sleep=record
        ) as client:
            assert (await client.list()).memories == [{"id": "m1"}]

    asyncio.run(go())
    assert awaits == [3.0]


def test_429_retries_are_bounded_in_count_and_wait() -> None:
    fake = FakeGateway(*(limited("1") for _ in range(10)))
    waits: list[float] = []
    with (
        HanzoClient(
            "http://gw", "hk-x", transport=httpx.MockTransport(fake), sleep=waits.append
        ) as client,
        pytest.raises(HanzoAPIError) as exc,
    ):
        client.list()
    assert exc.value.status == 429 and len(waits) == 3 and len(fake.requests) == 4

    fake = FakeGateway(limited("3600"))
    with (
        HanzoClient(
            "http://gw", "hk-x", transport=httpx.MockTransport(fake), sleep=waits.append
        ) as client,
        pytest.raises(HanzoAPIError),
    ):
        client.list()
    assert len(fake.requests) == 1  # longer than max_retry_wait: fails at once


def test_errors_keep_details_and_the_request_id() -> None:
    body = {
        "error": {
            "code": "validation_error",
            "message": "body is invalid",
            "details": [{"loc": ["importance"], "msg": "too big"}],
            "request_id": "req-123",
        }
    }
    fake = FakeGateway(httpx.Response(422, json=body))
    with (
        HanzoClient("http://gw", "hk-x", transport=httpx.MockTransport(fake)) as client,
        pytest.raises(HanzoAPIError) as exc,
    ):
        client.store("x")
    assert exc.value.details == body["error"]["details"]
    assert exc.value.request_id == "req-123" and "req-123" in str(exc.value)

    html = httpx.Response(502, text="<html>bad gateway</html>", headers={"X-Request-Id": "r9"})
    with (
        HanzoClient(
            "http://gw", "hk-x", transport=httpx.MockTransport(FakeGateway(html))
        ) as client,
        pytest.raises(HanzoAPIError) as exc,
    ):
        client.get("m")
    assert exc.value.status == 502 and exc.value.request_id == "r9"


def test_an_unreachable_server_is_a_connection_error_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with HanzoClient(url, "hk-x", timeout=2) as client, pytest.raises(HanzoConnectionError) as exc:
        client.list()
    assert url in str(exc.value) and "hk-x" not in str(exc.value)


def test_search_and_list_take_tag_as_the_readme_says() -> None:
    body = calls.search("q", tag=["a", "b"], namespace="n").json
    assert body["filters"] == {"tags": ["a", "b"], "namespace": "n"}
    assert "filters" not in calls.search("q").json
    assert calls.listing(tag=["a"], limit=5).params == {"limit": 5, "tag": ["a"]}


def test_credentials_follow_the_local_stack(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    state = tmp_path / "state"
    state.mkdir()
    creds = Credentials(
        gateway_url="http://127.0.0.1:1", casdoor_url="http://127.0.0.1:2", organization="acme",
        subject="acme/alice", key_id="k1", key="hk-secret", state_dir=str(state),
    )  # fmt: skip
    assert creds.follow() == (creds, None)  # no stack.json: nothing to follow
    (state / "stack.json").write_text(
        json.dumps(
            {"state_dir": str(state), "casdoor_url": "http://127.0.0.1:4",
             "cli_client_id": "c", "gateway_url": "http://127.0.0.1:3", "ports": {}}
        )
    )  # fmt: skip
    moved, note = creds.follow()
    assert moved.gateway_url == "http://127.0.0.1:3" and moved.casdoor_url == "http://127.0.0.1:4"
    assert note and "moved" in note and "hk-secret" not in note
    saved = Credentials.load()
    assert saved is not None and saved.gateway_url == "http://127.0.0.1:3"
    assert moved.follow()[1] is None  # once followed, nothing more to say
    remote = creds.model_copy(update={"state_dir": None})
    assert remote.follow() == (remote, None)


def test_a_long_build_says_elapsed_time_and_its_log(tmp_path: Path) -> None:
    """The child ends only after the first progress line: no race with the wall clock."""
    flag, log = tmp_path / "go", tmp_path / "build.log"
    child = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
        "print('built'); sys.exit(0)\n"
    )
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "elapsed" in line:
            flag.touch()

    code = run_logged(
        [sys.executable, "-c", child], tmp_path, {}, "go build", log, progress, interval=0.05
    )
    assert code == 0 and "built" in log.read_text()
    assert any("elapsed" in ln and str(log) in ln for ln in lines)
    assert lines[-1].startswith("go build: done in")
    failed = run_logged([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, {}, "x", log)
    assert failed == 3


def test_login_defaults_come_from_the_local_stack_and_only_follow_it(tmp_path: Path) -> None:
    from hanzo_client.cli import _where

    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text(
        json.dumps(
            {"state_dir": str(state), "casdoor_url": "http://127.0.0.1:4", "cli_client_id": "c",
             "gateway_url": "http://127.0.0.1:3", "ports": {}, "demo_organization": "acme"}
        )
    )  # fmt: skip
    local = _where(None, state, None, None, None, None)
    assert local == ("http://127.0.0.1:4", "c", "acme", "http://127.0.0.1:3", str(state))
    # a gateway named by flag is not the local stack: its credentials must not follow it
    elsewhere = _where(None, state, None, None, "globex", "http://10.0.0.1:80")
    assert elsewhere == ("http://127.0.0.1:4", "c", "globex", "http://10.0.0.1:80", None)
    with pytest.raises(typer.Exit):  # a remote server: its Casdoor must be named
        _where("https://gw.example", state, None, None, None, None)

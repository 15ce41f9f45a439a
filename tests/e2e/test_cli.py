"""The ``hanzo`` CLI and the Python client against the whole stack (one stack for the module):
sign-in with no flags, every ``hanzo memory`` command, credentials that follow a moved
stack, ``hanzo logout`` offline and online, the client's calls, errors and 429 retries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from hanzo_client import AsyncHanzoClient, HanzoAPIError, HanzoClient
from hanzo_client.credentials import Credentials
from hanzo_stack.cli import DEMO_SCOPES, _demo_owner, app
from hanzo_stack.stack import DEFAULT_TENANT_FILE
from tests.support.headless_login import headless_browser

from .support import RunningStack, pkce_login
from .test_journey import REVOCATION_BOUND_SECONDS

ORG, USER = "acme", "alice"  # the tenant file's first org: `hanzo up`'s demo organization


def refused_within_bound(stack: RunningStack, key: str) -> bool:
    """A revoked key is refused once the gateway's positive cache lapses (5 s bound)."""
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS + 2
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{stack.gateway}/v1/keys", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        if status == 401:
            return True
        time.sleep(0.25)
    return False


def dead_url() -> str:
    """A loopback URL where nothing listens (what an old stack's gateway URL becomes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def cli(
    running_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[CliRunner, dict[str, str]]:
    """The CLI as a user runs it after `hanzo up`: the stack's state dir, a fresh config
    dir, and a browser that signs alice in on Casdoor's page."""
    stack = running_stack
    org, owner = _demo_owner(DEFAULT_TENANT_FILE)
    assert (org, owner) == (ORG, f"{ORG}/{USER}")
    stack.stack.mint_demo_key(stack.info, org, owner, DEMO_SCOPES)  # as `hanzo up` does
    browser = headless_browser(
        stack.info.casdoor_url, ORG, USER, stack.password("ACME_ALICE_PASSWORD")
    )
    monkeypatch.setattr("hanzo_client.cli.webbrowser.open", browser)
    env = {
        "HANZO_STATE_DIR": stack.info.state_dir,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "250",
        "HANZO_API_KEY": "",
        "HANZO_GATEWAY_URL": "",
    }
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    return CliRunner(), env


def run(cli: tuple[CliRunner, dict[str, str]], *args: str, code: int = 0) -> Result:
    runner, env = cli
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def run_json(cli: tuple[CliRunner, dict[str, str]], *args: str) -> Any:
    return json.loads(run(cli, *args, "--json").stdout)


def test_login_needs_no_flags_and_every_memory_command_works(cli, running_stack) -> None:
    out = run(cli, "login", "--timeout", "30").output
    assert f"signed in as {ORG}/{USER}" in out
    creds = Credentials.load()
    assert creds is not None and creds.gateway_url == running_stack.gateway
    assert creds.state_dir == running_stack.info.state_dir
    assert creds.key.get_secret_value() not in out  # the key is never printed

    ids = [
        run_json(cli, "memory", "store", f"cli note {i} about tulips", "--tag", "cli")["id"]
        for i in range(3)
    ]
    table = run(cli, "memory", "list").stdout
    assert all(i in table for i in ids) and "cli note 2 about tulips" in table

    page1 = run_json(cli, "memory", "list", "--limit", "2", "--tag", "cli")
    assert len(page1["memories"]) == 2 and page1["next_cursor"]
    page2 = run_json(
        cli, "memory", "list", "--limit", "2", "--tag", "cli", "--cursor", page1["next_cursor"]
    )
    listed = [m["id"] for m in page1["memories"] + page2["memories"]]
    assert sorted(listed) == sorted(ids) and page2["next_cursor"] is None
    assert sorted(m["id"] for m in run_json(cli, "memory", "list", "--all")["memories"]) == sorted(
        ids
    )

    updated = run_json(
        cli, "memory", "update", ids[0], "--content", "cli note about roses", "--tag", "flowers"
    )
    assert updated["content"] == "cli note about roses" and updated["tags"] == ["flowers"]
    assert run_json(cli, "memory", "get", ids[0])["tags"] == ["flowers"]
    hits = run_json(cli, "memory", "search", "roses", "--mode", "keyword", "--tag", "flowers")
    assert [h["memory"]["id"] for h in hits] == [ids[0]]
    assert ids[0] in run(cli, "memory", "search", "roses", "--mode", "keyword").stdout

    refused = run(
        cli, "memory", "update", ids[0], "--importance", "0.5", "--tag", "x" * 300, code=1
    )
    assert "422" in refused.output and "details:" in refused.output  # what was wrong, said

    export = Path(cli[1]["XDG_CONFIG_HOME"]).parent / "export.ndjson"
    assert run_json(cli, "memory", "export", str(export))["exported"] == 3
    lines = [json.loads(x) for x in export.read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(ids)
    again = run_json(cli, "memory", "import", str(export))
    assert again == {"created": 0, "updated": 0, "duplicate": 3, "expired": 0}
    assert "duplicate" in run(cli, "memory", "import", str(export)).stdout

    assert run_json(cli, "memory", "delete", ids[1]) == {"deleted": ids[1]}
    missing = run(cli, "memory", "get", ids[1], code=1)
    assert "404" in missing.output and "request id" in missing.output

    assert run(cli, "--version").stdout.startswith("hanzo ")
    assert "revoked" in run(cli, "logout").output


def test_saved_credentials_follow_a_moved_stack(cli, running_stack) -> None:
    run(cli, "login", "--timeout", "30")
    creds = Credentials.load()
    assert creds is not None
    old = dead_url()  # where the gateway was before `hanzo down` / `hanzo up`
    creds.model_copy(update={"gateway_url": old}).save()

    result = run(cli, "memory", "list", "--json")
    assert (
        "moved" in result.stderr
        and old in result.stderr
        and running_stack.gateway in (result.stderr)
    )
    assert "memories" in json.loads(result.stdout)
    after = Credentials.load()
    assert after is not None and after.gateway_url == running_stack.gateway
    run(cli, "logout")


def test_logout_works_offline_and_says_the_key_is_not_revoked(cli, running_stack) -> None:
    run(cli, "login", "--timeout", "30")
    creds = Credentials.load()
    assert creds is not None
    key = creds.key.get_secret_value()
    # a remote server that is down: nothing to follow, nothing answers
    creds.model_copy(update={"gateway_url": dead_url(), "state_dir": None}).save()

    out = run(cli, "logout").output
    assert "NOT revoked" in out and creds.key_id in out and "removed" in out
    assert not Credentials.path().exists()
    assert key not in out
    with HanzoClient(running_stack.gateway, key) as client:  # it said so: still valid
        assert client.list(limit=1).memories is not None
        client.revoke_key(creds.key_id)

    failed = run(cli, "memory", "list", code=1)
    assert "not signed in" in failed.output
    assert run(cli, "logout").output.strip() == "not signed in"


def test_logout_online_revokes_the_key(cli, running_stack) -> None:
    run(cli, "login", "--timeout", "30")
    creds = Credentials.load()
    assert creds is not None
    assert "is revoked" in run(cli, "logout").output
    assert refused_within_bound(running_stack, creds.key.get_secret_value())


def test_login_with_a_dead_server_fails_cleanly(cli) -> None:
    result = run(cli, "login", "--server", dead_url(), "--timeout", "5", code=1)
    assert "--casdoor-url" in result.output  # a remote server needs its Casdoor named


def test_client_calls_sync_and_async(running_stack) -> None:
    tokens = pkce_login(running_stack, ORG, USER, running_stack.password("ACME_ALICE_PASSWORD"))
    with HanzoClient(running_stack.gateway, tokens["access_token"]) as admin:
        minted = admin.create_key("client-test", ["memory:read", "memory:write", "memory:delete"])
    key, key_id = minted["key"], minted["record"]["key_id"]

    with HanzoClient(running_stack.gateway, key) as client:
        ids = client.store_many(
            [{"content": f"client page item {i}", "namespace": "client"} for i in range(5)]
        )
        page = client.list(limit=2, namespace="client")
        assert len(page.memories) == 2 and page.next_cursor
        every = [m["id"] for m in client.iter_memories(limit=2, namespace="client")]
        assert sorted(every) == sorted(ids)
        changed = client.update(ids[0], tags=["t1"], importance=0.9)
        assert changed["tags"] == ["t1"] and changed["importance"] == 0.9
        assert [h["memory"]["id"] for h in client.search("item", mode="keyword", tag=["t1"])] == [
            ids[0]
        ]
        exported = [m for m in client.export() if m.get("namespace") == "client"]
        assert len(exported) == 5
        assert client.import_(exported) == {
            "created": 0, "updated": 0, "duplicate": 5, "expired": 0,
        }  # fmt: skip
        with pytest.raises(HanzoAPIError) as bad:
            client.store("x", importance=5)
        assert bad.value.status == 422 and bad.value.code == "validation_error"
        assert bad.value.details and bad.value.request_id  # what was wrong; whom to ask
        assert any("importance" in json.dumps(d) for d in bad.value.details)
        assert client.usage()["usage"] is not None
    # a key rotates keys only with keys:manage; the signed-in admin's token may
    with HanzoClient(running_stack.gateway, tokens["access_token"]) as admin:
        rotated = admin.rotate_key(key_id, grace_seconds=0)
        assert [k["key_id"] for k in admin.list_keys() if k["key_id"] == key_id] == [key_id]
        assert admin.show_key(key_id)["key_id"] == key_id
        new_key = rotated["key"]
        assert new_key != key and rotated["record"]["key_id"] == key_id

    async def same_calls_async() -> None:
        async with AsyncHanzoClient(running_stack.gateway, new_key) as client:
            page = await client.list(limit=2, namespace="client")
            assert len(page.memories) == 2
            every = [m["id"] async for m in client.iter_memories(limit=2, namespace="client")]
            assert sorted(every) == sorted(ids)
            assert (await client.update(ids[1], tags=["t2"]))["tags"] == ["t2"]
            assert len([m for m in await client.export() if m["namespace"] == "client"]) == 5
            with pytest.raises(HanzoAPIError) as missing:
                await client.get("no-such-memory")
            assert missing.value.status == 404 and missing.value.request_id
            await client.revoke_key(key_id)

    asyncio.run(same_calls_async())
    assert refused_within_bound(running_stack, new_key)


def test_a_429_is_retried_after_retry_after_and_bounded(running_stack) -> None:
    tokens = pkce_login(running_stack, ORG, USER, running_stack.password("ACME_ALICE_PASSWORD"))
    with HanzoClient(running_stack.gateway, tokens["access_token"]) as admin:
        minted = admin.create_key("paced", ["memory:read"], limits={"requests_per_minute": 1})
    waits: list[float] = []
    # the client's sleep is handed in: no real waiting, and the limiter still refuses
    with HanzoClient(
        running_stack.gateway, minted["key"], max_retry_wait=120, sleep=waits.append
    ) as client:
        client.list(limit=1)
        with pytest.raises(HanzoAPIError) as limited:
            client.list(limit=1)
    assert limited.value.status == 429
    assert len(waits) == 3 and all(0 < w <= 60 for w in waits)  # Retry-After, 3 times
    waits.clear()
    with (
        HanzoClient(running_stack.gateway, minted["key"], sleep=waits.append) as client,
        pytest.raises(HanzoAPIError),
    ):
        client.list(limit=1)
    assert all(w <= 30 for w in waits)  # never waits longer than max_retry_wait

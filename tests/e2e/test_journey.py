"""A user's journey through the real gateway, from sign-in to a revoked key."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hanzo_client import HanzoAPIError, HanzoClient
from hanzo_contract.assertion import INFERENCE_AUDIENCE, AssertionVerifier
from hanzo_stack.cli import app
from tests.support.headless_login import headless_browser

from .support import RunningStack, pkce_login

#: the gateway caches a positive key answer for at most this long (documented bound)
REVOCATION_BOUND_SECONDS = 5.0


def _device_key(stack: RunningStack, org: str, user: str, pw_env: str, scopes: list[str]):
    tokens = pkce_login(stack, org, user, stack.password(pw_env))
    with HanzoClient(stack.gateway, tokens["access_token"]) as client:
        minted = client.create_key(f"device-{uuid.uuid4().hex[:6]}", scopes)
    assert minted["key"].startswith("hk-")
    assert minted["record"]["owner"] == f"{org}/{user}"
    return minted


def test_sign_in_store_search_isolate_revoke(running_stack: RunningStack) -> None:
    stack = running_stack
    # alice (acme admin) signs in with PKCE and mints a key for this device
    alice = _device_key(
        stack,
        "acme",
        "alice",
        "ACME_ALICE_PASSWORD",
        ["memory:read", "memory:write", "memory:delete"],
    )
    secret_fact = f"acme launch code {uuid.uuid4().hex}"
    with HanzoClient(stack.gateway, alice["key"]) as client:
        memory_id = client.store(secret_fact, tags=["launch"])
        client.store("the office plant needs water on Fridays")
        hits = client.search("launch code", mode="keyword", top_k=5)
        assert [h["memory"]["id"] for h in hits][:1] == [memory_id]
        assert client.get(memory_id)["content"] == secret_fact

    # carol of globex signs in too: alice's memory does not exist for her
    carol = _device_key(
        stack, "globex", "carol", "GLOBEX_CAROL_PASSWORD", ["memory:read", "memory:write"]
    )
    with HanzoClient(stack.gateway, carol["key"]) as client:
        found = client.search("launch code", mode="keyword", top_k=10)
        assert all(secret_fact != h["memory"]["content"] for h in found)
        with pytest.raises(HanzoAPIError) as missing:
            client.get(memory_id)
        assert missing.value.status == 404
        # a key cannot be widened past the owner's roles (globex member has no delete)
        with pytest.raises(HanzoAPIError) as escalation:
            client.create_key("wider", ["memory:delete"])
        assert escalation.value.status == 403

    # alice's key has no inference scope: the inference-style route refuses it
    inference = httpx.post(
        f"{stack.gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {alice['key']}"},
        json={},
    )
    assert inference.status_code == 403
    assert inference.json()["error"]["code"] == "forbidden"

    # revoke the device key with itself (as `hanzo logout` does): refused within the bound
    with HanzoClient(stack.gateway, alice["key"]) as client:
        client.revoke_key(alice["record"]["key_id"])
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS + 2
    status = 200
    while time.monotonic() < deadline:
        status = httpx.post(
            f"{stack.gateway}/v1/memory/search",
            headers={"Authorization": f"Bearer {alice['key']}"},
            json={"query": "launch"},
        ).status_code
        if status == 401:
            break
        time.sleep(0.25)
    assert status == 401


def test_inference_route_takes_the_same_keys_and_hides_forged_identity(
    running_stack: RunningStack,
) -> None:
    stack = running_stack
    alice = _device_key(stack, "acme", "alice", "ACME_ALICE_PASSWORD", ["inference:invoke"])
    response = httpx.post(
        f"{stack.gateway}/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {alice['key']}",
            "X-User-Id": "globex/carol",
            "X-Org-Id": "globex",
        },
        json={"model": "any", "messages": []},
    )
    assert response.status_code == 200
    seen = {k.lower(): v for k, v in response.json()["headers"]}
    assert seen["x-user-id"] == "acme/alice" and seen["x-org-id"] == "acme"
    public = Path(stack.info.state_dir, "assertion.pub").read_bytes()
    principal = AssertionVerifier(public, audience=INFERENCE_AUDIENCE).verify(
        seen["x-hanzo-identity"], "POST", "/v1/chat/completions"
    )
    assert principal.subject == "acme/alice" and principal.scopes == {"inference:invoke"}
    # a reader (bob) has no inference scope, so cannot even mint such a key
    tokens = pkce_login(stack, "acme", "bob", stack.password("ACME_BOB_PASSWORD"))
    with (
        HanzoClient(stack.gateway, tokens["access_token"]) as client,
        pytest.raises(HanzoAPIError) as refused,
    ):
        client.create_key("bob-infer", ["inference:invoke"])
    assert refused.value.status == 403


def test_hanzo_login_keeps_a_0600_key_and_logout_revokes_it(
    running_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = running_stack
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    browser = headless_browser(
        stack.info.casdoor_url, "acme", "alice", stack.password("ACME_ALICE_PASSWORD")
    )
    monkeypatch.setattr("webbrowser.open", browser)
    runner = CliRunner()
    env = {
        "HANZO_CASDOOR_URL": stack.info.casdoor_url,
        "HANZO_GATEWAY_URL": stack.gateway,
        "HANZO_CLI_CLIENT_ID": stack.cli_client_id,
        "HANZO_ORG": "acme",
    }
    result = runner.invoke(app, ["login", "--timeout", "20"], env=env)
    assert result.exit_code == 0, result.output
    creds_path = tmp_path / "hanzo" / "credentials.json"
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = json.loads(creds_path.read_text())
    assert creds["key"] not in result.output  # shown nowhere, kept in the 0600 file

    env_memory = {k: v for k, v in os.environ.items() if not k.startswith("HANZO_")}
    stored = runner.invoke(app, ["memory", "store", "cli-stored memory", "--json"], env=env_memory)
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.output)["id"].startswith("m_")

    result = runner.invoke(app, ["logout"], env=env)
    assert result.exit_code == 0, result.output
    assert not creds_path.exists()
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS + 2
    status = 200
    while time.monotonic() < deadline and status != 401:
        status = httpx.get(
            f"{stack.gateway}/v1/keys", headers={"Authorization": f"Bearer {creds['key']}"}
        ).status_code
        time.sleep(0.25)
    assert status == 401

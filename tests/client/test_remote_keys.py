"""``hanzo keys`` against a stack over its HTTP keys API (``--server``/``--token``, or the
credentials ``hanzo login`` saved): the same tables as on the sidecar's host, and never
more than the API allows the credential (a reader's key cannot mint a wider key, nor a key
for someone else; a key with ``keys:manage`` cannot mint beyond its own scopes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hanzo_client.credentials import Credentials
from hanzo_stack.cli import app
from hanzo_stack.stack import DEFAULT_TENANT_FILE
from tests.e2e.support import RunningStack, pkce_login

ORG = "acme"


@pytest.fixture
def env(running_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A user's shell far from the sidecar: no state dir of the stack, a fresh config dir."""
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return {
        "HANZO_STATE_DIR": str(tmp_path / "not-the-stack"),
        "XDG_CONFIG_HOME": str(config),
        "COLUMNS": "250",
        "HANZO_API_KEY": "",
        "HANZO_GATEWAY_URL": "",
        "HANZO_TOKEN": "",
    }


def hanzo(env: dict[str, str], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def local(stack: RunningStack, *args: str) -> str:
    """The sidecar's own CLI on its host (the operator's path)."""
    return stack.stack._sidecar_cli(stack.stack._env(DEFAULT_TENANT_FILE), *args)


def local_key(stack: RunningStack, owner: str, name: str, scopes: list[str]) -> tuple[str, str]:
    args = ["keys", "create", "--org", ORG, "--owner", owner, "--name", name, "--json"]
    for scope in scopes:
        args += ["--scope", scope]
    created = json.loads(local(stack, *args))
    return created["key"], created["record"]["key_id"]


def table_row(output: str, prefix: str) -> str:
    [line] = [line for line in output.splitlines() if prefix in line]
    return line


@pytest.fixture(scope="module")
def admin_token(running_stack: RunningStack) -> str:
    """A signed-in org admin's access token (alice has keys:manage in acme)."""
    password = running_stack.password("ACME_ALICE_PASSWORD")
    return pkce_login(running_stack, ORG, "alice", password)["access_token"]


def test_an_org_admin_manages_keys_remotely_with_the_same_tables(
    running_stack: RunningStack, env: dict[str, str], admin_token: str
) -> None:
    remote = ["--server", running_stack.gateway, "--token", admin_token]
    created = hanzo(env, "keys", "create", "--name", "remote-1", "--scope", "memory:read",
                    "--tokens-per-day", "500", *remote, "--json")  # fmt: skip
    minted = json.loads(created.stdout)
    key, record = minted["key"], minted["record"]
    assert key.startswith("hk-") and record["owner"] == f"{ORG}/alice"
    assert record["limits"]["tokens_per_day"] == 500

    # the same table as the operator's on the sidecar's host, row for row
    remote_table = hanzo(env, "keys", "list", *remote).stdout
    local_table = local(running_stack, "keys", "list", "--org", ORG)
    assert f"API keys of {ORG}" in remote_table
    assert table_row(remote_table, record["prefix"]) == table_row(local_table, record["prefix"])
    assert remote_table.splitlines()[2] == local_table.splitlines()[2]  # the header row
    shown = hanzo(env, "keys", "show", record["key_id"], *remote).stdout
    assert record["prefix"] in shown and "memory:read" in shown
    # another organization's listing is not what this credential sees
    other = hanzo(env, "keys", "list", "--org", "globex", *remote, code=1)
    assert "belongs to organization 'acme'" in other.output

    rotated = json.loads(
        hanzo(env, "keys", "rotate", record["key_id"], "--grace", "0", *remote, "--json").stdout
    )
    assert rotated["key"] != key and rotated["record"]["key_id"] == record["key_id"]
    revoked = hanzo(env, "keys", "revoke", record["key_id"], *remote).stdout
    assert f"revoked {record['prefix']}" in revoked
    state = json.loads(local(running_stack, "keys", "show", "--org", ORG, record["key_id"],
                             "--json"))  # fmt: skip
    assert state["state"] == "revoked"
    assert key not in remote_table + shown + revoked  # secrets are printed once, at creation


def test_a_readers_key_cannot_mint_a_wider_key_through_the_cli(
    running_stack: RunningStack, env: dict[str, str]
) -> None:
    reader, _ = local_key(running_stack, f"{ORG}/bob", "bob-reader", ["memory:read"])
    remote = ["--server", running_stack.gateway, "--token", reader]
    attempts = {
        "wide-write": ["--scope", "memory:write"],
        "wide-manage": ["--scope", "keys:manage"],
        "for-alice": ["--scope", "memory:read", "--owner", f"{ORG}/alice"],
        "same-scopes": ["--scope", "memory:read"],  # a key without keys:manage mints none
    }
    for name, extra in attempts.items():
        refused = hanzo(env, "keys", "create", "--name", name, *extra, *remote, code=1)
        assert "HTTP 403" in refused.output or "HTTP 404" in refused.output, refused.output
    # nothing was minted; the reader's listing holds bob's own keys only
    names = {r["name"] for r in json.loads(local(running_stack, "keys", "list", "--org", ORG,
                                                 "--json"))}  # fmt: skip
    assert not names & set(attempts)
    listed = json.loads(hanzo(env, "keys", "list", *remote, "--json").stdout)
    assert listed and {r["owner"] for r in listed} == {f"{ORG}/bob"}
    # nor can it revoke or rotate a key that is not its own (the admin's is 404 to it)
    admins = [r for r in json.loads(local(running_stack, "keys", "list", "--org", ORG,
                                          "--owner", "alice", "--json"))]  # fmt: skip
    assert admins
    for verb in ("revoke", "rotate"):
        hidden = hanzo(env, "keys", verb, admins[0]["key_id"], *remote, code=1)
        assert "HTTP 404" in hidden.output


def test_a_manage_key_lists_the_organization_but_mints_only_within_its_scopes(
    running_stack: RunningStack, env: dict[str, str]
) -> None:
    manager, _ = local_key(
        running_stack, f"{ORG}/alice", "alice-manager", ["memory:read", "keys:manage"]
    )
    remote = ["--server", running_stack.gateway, "--token", manager]
    owners = {r["owner"] for r in json.loads(hanzo(env, "keys", "list", *remote, "--json").stdout)}
    assert f"{ORG}/bob" in owners and f"{ORG}/alice" in owners  # the organization's keys
    wider = hanzo(env, "keys", "create", "--name", "m-wide", "--scope", "memory:write",
                  *remote, code=1)  # fmt: skip
    assert "memory:write" in wider.output


def test_the_credentials_saved_by_login_reach_the_remote_keys_api(
    running_stack: RunningStack, env: dict[str, str]
) -> None:
    key, key_id = local_key(running_stack, f"{ORG}/alice", "alice-device", ["memory:read"])
    Credentials(
        gateway_url=running_stack.gateway,
        casdoor_url=running_stack.info.casdoor_url,
        organization=ORG,
        subject=f"{ORG}/alice",
        key_id=key_id,
        key=key,
    ).save()
    listed: list[dict[str, Any]] = json.loads(
        hanzo(env, "keys", "list", "--remote", "--json").stdout
    )
    assert key_id in {r["key_id"] for r in listed}
    # the saved key is sent only to the gateway it was saved for
    elsewhere = hanzo(env, "keys", "list", "--server", "http://127.0.0.1:9", code=1)
    assert "saved credentials are for" in elsewhere.output

"""Secrets at rest after a real `hanzo up`: private modes, and no credential in any log."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import httpx

from tests.e2e.support import RunningStack

#: files whose whole purpose is to hold a secret for the operator (0600 like the rest)
SECRET_FILES = {"demo-key"}


def _walk(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def test_state_dir_is_private_to_the_service_user(running_stack: RunningStack) -> None:
    state = Path(running_stack.info.state_dir)
    # a memory and a quota charge, so both databases exist before the walk
    key = running_stack.stack.mint_demo_key(
        running_stack.info, "acme", "alice", ["memory:read", "memory:write"]
    ).read_text()
    stored = httpx.post(
        f"{running_stack.gateway}/v1/memory/store",
        headers={"Authorization": f"Bearer {key}"},
        json={"content": "modes are private"},
    )
    assert stored.status_code in (200, 201), stored.text
    paths = _walk(state)
    names = {path.name for path in paths}
    # the walk covers what the issue found world-readable
    assert {"access.log", "quota.db", "casdoor.db", "casdoor.log", "sidecar.log"} <= names
    assert any(path.is_relative_to(state / "memory") and path.is_file() for path in paths)
    loose = []
    for path in paths:
        if path.is_symlink() or path.is_socket():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        # group/other get nothing; the owner keeps what the file needs (a dir: rwx)
        if mode & 0o077 or (path.is_dir() and mode != wanted):
            loose.append(f"{oct(mode)} {path.relative_to(state)}")
    assert loose == []


def test_no_log_holds_a_credential(running_stack: RunningStack) -> None:
    info = running_stack.info
    state = Path(info.state_dir)
    key = running_stack.stack.mint_demo_key(
        info, "acme", "alice", ["memory:read", "memory:write"]
    ).read_text()
    unknown = f"hk-{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    gateway = running_stack.gateway
    sent = []
    for credential in (key, unknown):
        for path in ("/v1/memory/retrieve", "/v1/keys", "/v1/nowhere"):
            query = {"api_key": credential, "token": credential}
            for headers in (
                {"Authorization": f"Bearer {credential}"},
                {"X-API-Key": credential},
                {"Referer": f"https://example.test/?key={credential}"},
            ):
                sent.append(httpx.get(gateway + path, params=query, headers=headers).status_code)
    assert 200 in sent and 401 in sent  # both allowed and refused requests were logged
    secret_parts = [credential.split("_", 1)[1] for credential in (key, unknown)]
    logs = [
        path
        for path in _walk(state)
        if path.is_file() and path.name not in SECRET_FILES and not path.name.endswith(".pid")
    ]
    assert {"access.log", "error.log", "sidecar.log", "gateway.log", "memory.log"} <= {
        path.name for path in logs
    }
    hits = [
        str(path.relative_to(state))
        for path in logs
        for part in secret_parts
        if part.encode() in path.read_bytes()
    ]
    assert hits == []
    # the access log did record those requests, just not their credentials
    access = next(path for path in logs if path.name == "access.log").read_text()
    assert access.count("/v1/memory/retrieve") >= 6 and "api_key" not in access

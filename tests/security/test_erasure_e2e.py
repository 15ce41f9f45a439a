"""`hanzo erase` against a real `hanzo up`: a user's, then a whole organization's memories
and keys go; searches right after find nothing; the erased keys are refused through the
gateway within the revocation bound; the audit log keeps a receipt with hashed ids."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time

import httpx

from tests.e2e.support import RunningStack

REVOCATION_BOUND_SECONDS = 5.0
SLACK_SECONDS = 2.0  # real processes on a loaded machine


def _hanzo(state: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hanzo_stack", *args],
        env={**os.environ, "HANZO_STATE_DIR": state},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _key(stack: RunningStack, org: str, owner: str, scopes: list[str]) -> str:
    """A fresh key, minted by the operator's CLI (each call a new key)."""
    name = f"erase-{secrets.token_hex(4)}"
    args = ["keys", "create", "--org", org, "--owner", owner, "--name", name, "--json"]
    made = _hanzo(stack.info.state_dir, *args, *[a for s in scopes for a in ("--scope", s)])
    assert made.returncode == 0, made.stdout + made.stderr
    return str(json.loads(made.stdout)["key"])


def _store(gateway: str, key: str, *contents: str) -> list[str]:
    response = httpx.post(
        f"{gateway}/v1/memory/store",
        headers={"Authorization": f"Bearer {key}"},
        json={"memories": [{"content": content} for content in contents]},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["ids"]


def _search(gateway: str, key: str, word: str) -> list[str]:
    response = httpx.post(
        f"{gateway}/v1/memory/search",
        headers={"Authorization": f"Bearer {key}"},
        json={"query": word, "mode": "hybrid", "top_k": 20},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [hit["memory"]["id"] for hit in response.json()["results"]]


def _refused_within_bound(gateway: str, keys: list[str]) -> float:
    """Seconds until every key gets a 401 through the gateway (bounded wait)."""
    started = time.monotonic()
    deadline = started + REVOCATION_BOUND_SECONDS + SLACK_SECONDS
    pending = list(keys)
    while pending and time.monotonic() < deadline:
        pending = [
            key
            for key in pending
            if httpx.get(
                f"{gateway}/v1/memory/retrieve", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            != 401
        ]
        if pending:
            time.sleep(0.2)
    assert pending == []
    return time.monotonic() - started


def _digests(values: list[str]) -> list[str]:
    return sorted(hashlib.sha256(value.encode()).hexdigest() for value in values)


def test_erase_a_user_then_an_organization(running_stack: RunningStack) -> None:
    state, gateway = running_stack.info.state_dir, running_stack.gateway
    word = f"quokka{secrets.token_hex(4)}"
    writer = ["memory:read", "memory:write"]
    alice_keys = [_key(running_stack, "acme", "alice", writer) for _ in range(2)]
    bob_key = _key(running_stack, "acme", "bob", ["memory:read"])
    alices = _store(gateway, alice_keys[0], f"{word} alice one", f"{word} alice two")
    assert set(alices) <= set(_search(gateway, alice_keys[1], word))  # both keys are hers

    erased = _hanzo(state, "erase", "--org", "acme", "--user", "alice", "--yes")
    assert erased.returncode == 0, erased.stdout + erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["memories"] == 2 and receipt["memory_ids_sha256"] == _digests(alices)
    assert receipt["keys"] >= 2  # hers from this test (and any demo key she had)
    assert word not in erased.stdout and all(key not in erased.stdout for key in alice_keys)
    took = _refused_within_bound(gateway, alice_keys)
    fresh = _key(running_stack, "acme", "alice", writer)
    assert _search(gateway, fresh, word) == []  # nothing of hers is left to find
    still = httpx.get(
        f"{gateway}/v1/memory/retrieve", headers={"Authorization": f"Bearer {bob_key}"}
    )
    assert still.status_code == 200  # bob's key is not hers

    audit = _hanzo(state, "audit", "--org", "acme", "--action", "erasure", "--json")
    assert audit.returncode == 0, audit.stderr
    rows = json.loads(audit.stdout)
    rows = rows if isinstance(rows, list) else rows["events"]
    assert rows[0]["details"]["memory_ids_sha256"] == _digests(alices)
    assert rows[0]["target"] == "acme/alice"

    # globex is offboarded: all of its memories and keys
    carol = _key(running_stack, "globex", "carol", writer)
    carols = _store(gateway, carol, f"{word} carol's")
    whole = _hanzo(state, "erase", "--org", "globex", "--yes")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    offboarded = json.loads(whole.stdout)
    assert offboarded["user"] is None and offboarded["memory_ids_sha256"] == _digests(carols)
    took = max(took, _refused_within_bound(gateway, [carol]))
    after = _key(running_stack, "globex", "carol", writer)
    assert _search(gateway, after, word) == []
    print(f"erased keys refused after {took:.2f}s (bound {REVOCATION_BOUND_SECONDS}s)")


def test_a_user_erases_their_own_memories_through_the_gateway(
    running_stack: RunningStack,
) -> None:
    gateway = running_stack.gateway
    word = f"wombat{secrets.token_hex(4)}"
    key = _key(running_stack, "acme", "alice", ["memory:read", "memory:write", "memory:delete"])
    reader = _key(running_stack, "acme", "bob", ["memory:read"])
    ids = _store(gateway, key, f"{word} mine", f"{word} also mine")
    url = f"{gateway}/v1/memory/erase"
    refused = httpx.post(url, json={"user": "bob"}, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403  # the gateway: a reader has no memory:delete
    erased = httpx.post(url, json={"user": "alice"}, headers={"Authorization": f"Bearer {key}"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["memory_ids_sha256"] == _digests(ids)
    assert _search(gateway, key, word) == []

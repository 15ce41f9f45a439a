"""Acknowledged writes survive ``kill -9`` of the service (SQLite backend, real uvicorn)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionSigner, generate_keypair
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok

N = 150


def start_service(tmp: Path, public_key: Path, port: int) -> ManagedProcess:
    env = {
        "HANZO_MEMORY_BACKEND": "sqlite",
        "HANZO_MEMORY_DATA_DIR": str(tmp / "data"),
        "HANZO_MEMORY_EMBEDDER": "deterministic",
        "HANZO_MEMORY_ASSERTION_PUBLIC_KEY": str(public_key),
    }
    argv = [sys.executable, "-m", "memory_service.cli", "serve", "--host", LOOPBACK,
            "--port", str(port)]  # fmt: skip
    proc = ManagedProcess("memory", argv, log_path=tmp / "memory.log", env=env).start()
    proc.wait_ready(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), timeout=60)
    return proc


def test_acknowledged_writes_survive_kill_9(tmp_path: Path):
    private_pem, public_pem = generate_keypair()
    key = tmp_path / "assertion.pub"
    key.write_bytes(public_pem)
    signer = AssertionSigner(private_pem, ttl_seconds=300)
    who = Principal(organization="acme", subject="acme/alice",
                    scopes=frozenset({"memory:read", "memory:write"}))  # fmt: skip

    def headers(method: str, route: str) -> dict[str, str]:
        """What the gateway would add: an assertion for this request to the memory service."""
        token = signer.sign(
            who, audience=MEMORY_AUDIENCE, method=method, path=f"/v1/memory/{route}"
        )
        return {ASSERTION: token}

    port = free_port()
    base = f"http://{LOOPBACK}:{port}/v1/memory"

    proc = start_service(tmp_path, key, port)
    acked: dict[str, str] = {}
    try:
        with httpx.Client(timeout=10) as c:
            for i in range(N):
                content = f"durable memory number {i}"
                r = c.post(
                    f"{base}/store", json={"content": content}, headers=headers("POST", "store")
                )
                assert r.status_code == 200, r.text
                acked[r.json()["ids"][0]] = content
    finally:
        proc.kill()  # SIGKILL: no shutdown hooks, no flush
    assert not proc.running()
    assert len(acked) == N

    proc = start_service(tmp_path, key, port)
    try:
        with httpx.Client(timeout=10) as c:
            found: dict[str, str] = {}
            cursor = None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                body = c.get(
                    f"{base}/retrieve", params=params, headers=headers("GET", "retrieve")
                ).json()
                found.update({m["id"]: m["content"] for m in body["memories"]})
                cursor = body["next_cursor"]
                if not cursor:
                    break
            assert found == acked
            # Indexes came back too: keyword and vector search find the last acknowledged write.
            last = f"durable memory number {N - 1}"
            for mode in ("keyword", "vector"):
                hits = c.post(f"{base}/search", json={"query": last, "mode": mode, "top_k": 1},
                              headers=headers("POST", "search")).json()["results"]  # fmt: skip
                assert hits[0]["memory"]["content"] == last
    finally:
        proc.stop()

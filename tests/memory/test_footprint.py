"""The memory service's resident size with the local model stays flat while it stores.

A real service process (uvicorn, SQLite, the real MiniLM model) stores texts of every
length from a sentence to a long paragraph, so its model runs take many batch shapes:
the case where onnxruntime's arena and glibc's heap kept every shape's activations (the
service reached 5.8 GB after 10,000 stores). The figures are read from /proc.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import httpx

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionSigner, generate_keypair
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok

PROSE = (
    "the service stores memories for every tenant and searches them by meaning or by "
    "keyword while a gateway checks keys limits and quotas before any request reaches "
    "it so each organization sees only its own rows which are kept in a database file "
    "with a full text index beside the vectors that a small sentence model computes "
    "from plain English paragraphs about deployments rotations incidents and plans"
)
WORDS = PROSE.split()
#: requests of this many texts; resident size is read after half of them and after all
REQUESTS, PER_REQUEST = 4, 48


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def texts(rng: random.Random, n: int) -> list[str]:
    """``n`` texts of 5 to 190 words: every bucket width the model runs take."""
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 190))) for _ in range(n)]


def test_resident_size_stays_flat_while_storing_with_the_local_model(tmp_path: Path):
    private_pem, public_pem = generate_keypair()
    (tmp_path / "assertion.pub").write_bytes(public_pem)
    signer = AssertionSigner(private_pem, ttl_seconds=600)
    who = Principal(organization="acme", subject="acme/alice",
                    scopes=frozenset({"memory:read", "memory:write"}))  # fmt: skip
    port = free_port()
    env = {
        "HANZO_MEMORY_BACKEND": "sqlite",
        "HANZO_MEMORY_DATA_DIR": str(tmp_path / "data"),
        "HANZO_MEMORY_EMBEDDER": "local",
        "HANZO_MEMORY_ASSERTION_PUBLIC_KEY": str(tmp_path / "assertion.pub"),
    }
    argv = [sys.executable, "-m", "memory_service.cli", "serve", "--host", LOOPBACK,
            "--port", str(port)]  # fmt: skip
    proc = ManagedProcess("memory", argv, log_path=tmp_path / "memory.log", env=env).start()
    rng = random.Random(14)
    try:
        proc.wait_ready(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), timeout=120)
        pid = proc.pid
        assert pid is not None
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}/v1/memory", timeout=600) as c:

            def store(batch: list[str]) -> None:
                token = signer.sign(who, audience=MEMORY_AUDIENCE, method="POST",
                                    path="/v1/memory/store")  # fmt: skip
                body = {"memories": [{"content": t} for t in batch]}
                r = c.post("/store", json=body, headers={ASSERTION: token})
                assert r.status_code == 200, r.text

            store(["a first short memory"])  # the model and the database are loaded
            start = resident_mb(pid)
            for _ in range(REQUESTS // 2):
                store(texts(rng, PER_REQUEST))
            half = resident_mb(pid)
            for _ in range(REQUESTS - REQUESTS // 2):
                store(texts(rng, PER_REQUEST))
            end = resident_mb(pid)
    finally:
        proc.stop()
    figures = f"start {start:.0f} MB, half {half:.0f} MB, end {end:.0f} MB"
    # Without the allocator settings the first runs alone added over 300 MB.
    assert half - start < 120, figures
    assert end - half < 40, figures
    assert end < 1024, figures

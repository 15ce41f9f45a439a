"""The SQLite backend keeps every tenant's vectors in the serving process, so a second
process serving the same file would answer from vectors that miss the first one's writes.
It is refused with a clear error instead; replicas run on PostgreSQL or Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hanzo_contract.assertion import generate_keypair
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok
from memory_service.backends.sqlite import SecondServerError, SqliteBackend


async def test_a_second_open_of_the_same_file_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = SqliteBackend(tmp_path / "m.sqlite3", 8)
    await first.open()
    second = SqliteBackend(tmp_path / "m.sqlite3", 8)
    with pytest.raises(SecondServerError, match="one serving process per file"):
        await second.open()
    other = SqliteBackend(tmp_path / "other.sqlite3", 8)  # another file is another matter
    await other.open()
    await other.close()
    await first.close()
    await second.open()  # the lock went with the first
    await second.close()


def test_a_second_service_process_on_the_same_data_dir_exits_with_the_reason(
    tmp_path: Path,
) -> None:
    _, public_pem = generate_keypair()
    (tmp_path / "assertion.pub").write_bytes(public_pem)
    env = {
        "HANZO_MEMORY_BACKEND": "sqlite",
        "HANZO_MEMORY_DATA_DIR": str(tmp_path / "data"),
        "HANZO_MEMORY_EMBEDDER": "deterministic",
        "HANZO_MEMORY_ASSERTION_PUBLIC_KEY": str(tmp_path / "assertion.pub"),
    }

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "memory_service.cli", "serve", "--host", LOOPBACK,
                "--port", str(port)]  # fmt: skip

    port = free_port()
    first = ManagedProcess("memory", argv(port), log_path=tmp_path / "a.log", env=env).start()
    try:
        first.wait_ready(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), timeout=120)
        second = subprocess.run(
            argv(free_port()),
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert "one serving process per file" in second.stdout + second.stderr
        assert http_ok(f"http://{LOOPBACK}:{port}/healthz")  # the first one keeps serving
    finally:
        first.stop()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HANZO_")}

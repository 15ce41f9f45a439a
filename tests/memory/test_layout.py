"""An SQLite deployment of the memory service loads no other storage engine (its import
arrows are checked for every package in ``tests/foundation/test_layering.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hanzo_contract.assertion import generate_keypair

REPO = Path(__file__).resolve().parents[2]


def test_an_sqlite_app_loads_no_other_engine(tmp_path: Path):
    public_key = tmp_path / "assertion.pub"
    public_key.write_bytes(generate_keypair()[1])
    script = f"""
import sys
from memory_service.app import create_app
from memory_service.settings import MemorySettings
create_app(MemorySettings(backend="sqlite", data_dir={str(tmp_path)!r},
                          embedder="deterministic", assertion_public_key={str(public_key)!r}))
loaded = sorted(m for m in ("lancedb", "pyarrow", "redis") if m in sys.modules)
assert not loaded, loaded
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_building_the_app_leaves_the_root_logger_as_it_was(tmp_path: Path):
    """FastMCP's constructor puts a Rich console handler at INFO on an unconfigured root
    logger; a script that builds the app (the benchmarks) then printed every request."""
    public_key = tmp_path / "assertion.pub"
    public_key.write_bytes(generate_keypair()[1])
    script = f"""
import logging
from memory_service.app import create_app
from memory_service.settings import MemorySettings
create_app(MemorySettings(backend="sqlite", data_dir={str(tmp_path)!r},
                          embedder="deterministic", assertion_public_key={str(public_key)!r}))
root = logging.getLogger()
assert root.handlers == [], root.handlers
assert root.level == logging.WARNING, root.level
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

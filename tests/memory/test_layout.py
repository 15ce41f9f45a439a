"""The memory service's arrows: it imports only itself, the contract and third-party
libraries, and an SQLite deployment loads no other storage engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hanzo_contract.assertion import generate_keypair

REPO = Path(__file__).resolve().parents[2]
#: the repo's other parts: the memory service must not know they exist
OTHER_PARTS = {"iam_sidecar", "gateway_plugins", "hanzo_stack", "hanzo_client", "tests"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_memory_service_imports_no_other_part():
    modules = sorted((REPO / "memory_service").rglob("*.py"))
    assert len(modules) > 20
    wrong = {
        str(path.relative_to(REPO)): sorted(imported_roots(path) & OTHER_PARTS)
        for path in modules
        if imported_roots(path) & OTHER_PARTS
    }
    assert wrong == {}


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

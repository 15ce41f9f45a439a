"""Arrows point one way: adapters -> core -> contract.

Every module of every product package is parsed (ast, nothing imported) and each import of
another of our packages is checked against the allowed arrows. The composition root
(``hanzo_stack``) is the one place that may import every part.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> the other packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "hanzo_contract": set(),
    "iam_sidecar": {"hanzo_contract"},
    "gateway_plugins": {"hanzo_contract"},
    "memory_service": {"hanzo_contract"},
    "hanzo_client": {"hanzo_contract"},
    "inference_gateway": {"hanzo_contract"},
    "hanzo_stack": {
        "hanzo_contract",
        "iam_sidecar",
        "gateway_plugins",
        "memory_service",
        "hanzo_client",
        "inference_gateway",
    },
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".", 1)[0]
            if top == "tests" or (
                top in ALLOWED and top != package and top not in ALLOWED[package]
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_forbidden_arrow(package: str) -> None:
    assert (ROOT / package).is_dir()
    assert _violations(package) == []


def test_the_check_sees_a_forbidden_arrow(tmp_path: Path) -> None:
    """The walker itself must catch a bad import (a check that cannot fail proves nothing)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from gateway_plugins.build import build_core\n")
    assert _imports(module) == [(2, "gateway_plugins.build")]

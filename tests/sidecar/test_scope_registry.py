"""One registry of scopes (``hanzo_contract.scopes``): the route tables require only
those, the tenant file grants only those, and the registry holds nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hanzo_contract.scopes import KEYS_MANAGE, KNOWN_SCOPES
from iam_sidecar.errors import TenantFileError
from iam_sidecar.tenants.loader import load_tenant_file

from .helpers import EXAMPLE_TENANTS

ROOT = Path(__file__).resolve().parents[2]
ROUTE_TABLES = [ROOT / "gateway_plugins" / "routes.default.yaml", ROOT / "deploy/stack/routes.yaml"]


def test_the_registry_is_what_the_route_tables_require() -> None:
    """Every scope names a route that needs it (``keys:manage`` is the sidecar's own: it
    decides whose keys a caller manages), so the registry carries no dead grants."""
    required = {
        route["permission"]
        for table in ROUTE_TABLES
        for route in yaml.safe_load(table.read_text())["routes"]
        if route["permission"] not in (None, "authenticated")
    }
    assert required | {KEYS_MANAGE} == KNOWN_SCOPES


def test_an_unknown_scope_in_the_tenant_file_names_file_line_and_field(tmp_path: Path) -> None:
    """Grant 5: ``memory:teleport`` validated, applied and became a Casdoor permission."""
    text = EXAMPLE_TENANTS.read_text()
    lines = text.splitlines()
    writer = next(
        i for i, line in enumerate(lines) if "scopes: [memory:read, memory:write, inf" in line
    )
    lines[writer] = lines[writer].replace("inference:invoke", "memory:teleport")
    app = next(i for i, line in enumerate(lines) if "scopes: [memory:write]" in line)
    lines[app] = lines[app].replace("memory:write", "keys:teleport")
    path = tmp_path / "tenants.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TenantFileError) as info:
        load_tenant_file(path)
    problems = [(p["line"], p["field"]) for p in info.value.problems]
    assert problems == [
        (writer + 1, "organizations[0].roles[1].scopes[2]"),
        (app + 1, "organizations[0].applications[0].scopes[0]"),
    ]
    assert (
        f"{path}:{writer + 1}: organizations[0].roles[1].scopes[2]: unknown scope 'memory:teleport'"
        in (info.value.message)
    )

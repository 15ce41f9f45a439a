"""The whole stack as `hanzo up` starts it (real Casdoor, sidecar, plugin, memory, nginx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack

from .support import RunningStack

#: the tenant whose device sign-in the e2e stack turns on; the other keeps the default (off)
DEVICE_ORG = "acme"


def tenants_with_device_login(source: Path, directory: Path) -> Path:
    """``source`` with ``device_login: true`` for :data:`DEVICE_ORG` only."""
    data = yaml.safe_load(source.read_text())
    for org in data["organizations"]:
        if org["name"] == DEVICE_ORG:
            org["device_login"] = True
    path = directory / "tenants.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def running_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """``STACK_TENANT_FILE`` in the test module replaces the example tenant file."""
    tenant_file = getattr(request.module, "STACK_TENANT_FILE", DEFAULT_TENANT_FILE)
    state = tmp_path_factory.mktemp("stack")
    tenants = tenants_with_device_login(tenant_file, tmp_path_factory.mktemp("tenants"))
    echo = EchoUpstream(state).start()  # stands in for the inference gateway
    stack = Stack(state, progress=lambda _: None)
    try:
        info = stack.up(tenants, inference_upstream=f"127.0.0.1:{echo.port}")
        yield RunningStack(stack, info, stack.layout.seed_passwords(tenants), echo)
    finally:
        stack.down(quiet=True)
        echo.stop()

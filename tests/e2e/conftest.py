"""The whole stack as `hanzo up` starts it (real Casdoor, sidecar, plugin, memory, nginx)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack

from .support import RunningStack


@pytest.fixture(scope="module")
def running_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """``STACK_TENANT_FILE`` in the test module replaces the example tenant file."""
    tenant_file = getattr(request.module, "STACK_TENANT_FILE", DEFAULT_TENANT_FILE)
    state = tmp_path_factory.mktemp("stack")
    echo = EchoUpstream(state).start()  # stands in for the inference gateway
    stack = Stack(state, progress=lambda _: None)
    try:
        info = stack.up(tenant_file, inference_upstream=f"127.0.0.1:{echo.port}")
        yield RunningStack(stack, info, stack.layout.seed_passwords(tenant_file), echo)
    finally:
        stack.down(quiet=True)
        echo.stop()

"""The whole stack as `hanzo up` starts it (real Casdoor, sidecar, plugin, memory, nginx)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack

from .support import RunningStack


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state = tmp_path_factory.mktemp("stack")
    echo = EchoUpstream(state).start()  # stands in for the inference gateway
    stack = Stack(state, progress=lambda _: None)
    try:
        info = stack.up(DEFAULT_TENANT_FILE, inference_upstream=f"127.0.0.1:{echo.port}")
        yield RunningStack(stack, info, stack.layout.seed_passwords(DEFAULT_TENANT_FILE), echo)
    finally:
        stack.down(quiet=True)
        echo.stop()

"""Session-wide real servers shared by every test area.

``casdoor``: a real Casdoor built from its pinned Go module (cached outside the repo),
running on a loopback port with its state in a temp dir. Areas create their own
organizations with unique names, so they never step on each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanzo_stack.casdoor_server import CasdoorServer


@pytest.fixture(scope="session")
def casdoor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasdoorServer]:
    server = CasdoorServer(tmp_path_factory.mktemp("casdoor-state"))
    server.start()
    try:
        yield server
    finally:
        server.stop()

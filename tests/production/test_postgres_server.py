"""PostgreSQL started as root on a state dir that does not exist yet (a first ``hanzo up``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hanzo_stack.postgres import PostgresServer


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A parent every user may traverse, as ``/tmp`` or a 0755 home would be."""
    parent = Path(tempfile.mkdtemp(prefix="hanzo-pg-parent-"))
    parent.chmod(0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def test_a_state_dir_made_at_start_still_serves(open_parent: Path) -> None:
    state = open_parent / "state" / "postgres"  # made 0700 by the server's spawn
    server = PostgresServer(state).start()
    try:
        with psycopg.connect(server.dsn(), connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert state.stat().st_mode & 0o777 == 0o700
        if os.geteuid() == 0:  # the server user cannot enter the 0700 state dir
            assert state not in server.pgdata.parents
    finally:
        server.stop()
        if state not in server.pgdata.parents:
            shutil.rmtree(server.pgdata.parent, ignore_errors=True)

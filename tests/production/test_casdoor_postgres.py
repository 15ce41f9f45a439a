"""Casdoor on PostgreSQL (``driverName=postgres``): its state is in the database, not a file,
and its ``record`` table keeps no request body or query string there either.

(The sidecar's Casdoor tests, tenant sync and login included, run on this Casdoor too:
``tests/sidecar`` imports ``casdoor_on_each_engine``.)
"""

from __future__ import annotations

import psycopg

from hanzo_stack.casdoor.server import CasdoorServer
from tests.support.casdoor_records import assert_refused_grants_leave_no_secret


def _records(dsn: str, since_id: int) -> list[dict[str, object]]:
    with psycopg.connect(dsn) as db:
        cur = db.execute("SELECT * FROM record WHERE id > %s ORDER BY id", (since_id,))
        columns = [c.name for c in cur.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def test_casdoor_keeps_its_state_in_postgres(casdoor_postgres: CasdoorServer) -> None:
    assert casdoor_postgres.engine == "postgres"
    assert not casdoor_postgres.state.db_path.exists()  # no SQLite file beside it
    dsn = casdoor_postgres.database_url
    assert dsn is not None
    with psycopg.connect(dsn) as db:
        found = db.execute(
            "SELECT client_id FROM application WHERE client_id = %s",
            (casdoor_postgres.client_id,),
        ).fetchone()
    assert found is not None  # the sidecar's application, as Casdoor stored it
    # a later start of the same state dir remembers the database (0600, not in env files)
    again = CasdoorServer(casdoor_postgres.state.run_dir.parent)
    assert again.database_url == dsn and again.env()["driverName"] == "postgres"
    assert (casdoor_postgres.state.run_dir / "database-url").stat().st_mode & 0o077 == 0


def test_refused_password_grant_leaves_no_secret_in_postgres_records(
    casdoor_postgres: CasdoorServer,
) -> None:
    casdoor = casdoor_postgres
    dsn = casdoor.database_url
    assert dsn is not None
    with psycopg.connect(dsn) as db:
        since = int(db.execute("SELECT coalesce(max(id), 0) FROM record").fetchone()[0])  # type: ignore[index]
    assert_refused_grants_leave_no_secret(casdoor, lambda since_id: _records(dsn, since_id), since)

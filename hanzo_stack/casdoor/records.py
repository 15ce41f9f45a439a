"""Keep request bodies and query strings out of Casdoor's ``record`` table.

Casdoor (v1.1000.0, ``object/record.go``) stores every POST's body in ``record.object`` and
its full request URI in ``record.request_uri``. It masks only JSON ``"password":"..."``,
so a form-encoded password grant (``grant_type=password&password=...``), a
``set-password`` form, a ``client_secret`` or a signed-up user's password hash land there
in clear. It has no switch to stop that (``logPostOnly`` only drops GETs; records go to
casvisor instead only when one is configured), so the stack installs a trigger in
Casdoor's own database: every record keeps who, what, when and the answer, never the body
or the query string. On SQLite the trigger writes a stripped copy and drops the original
insert, so a secret never reaches a database page (an ``AFTER INSERT`` update would leave it
in free space); on PostgreSQL a ``BEFORE INSERT`` trigger strips the row it is handed, so
the secret never reaches the heap either.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

TRIGGER = "hanzo_record_without_secrets"

#: what a record keeps of its request URI: the path, never the query string
_PATH_ONLY = (
    "CASE WHEN instr({uri}, '?') > 0 THEN substr({uri}, 1, instr({uri}, '?') - 1) ELSE {uri} END"
)


def _stripped(column: str, alias: str) -> str:
    """The value a kept record gets for ``column`` (``alias``: NEW, or the table itself)."""
    if column == "object":
        return "''"
    if column == "request_uri":
        return _PATH_ONLY.format(uri=f"{alias}.request_uri")
    return f"{alias}.{column}"


def install_record_scrubber(db_path: Path, timeout: float = 10.0) -> int:
    """Create the trigger (idempotent) and strip records written before it existed.

    Runs while Casdoor serves (its tables exist once ``/api/health`` answers). Returns how
    many old records were stripped; their old bytes are overwritten (``secure_delete``).
    """
    with sqlite3.connect(db_path, timeout=timeout) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(record)")]
        if not columns:
            raise RuntimeError(f"Casdoor's record table is missing in {db_path}")
        kept = [column for column in columns if column != "id"]
        if not all(column.isidentifier() for column in kept):  # names are spliced in below
            raise RuntimeError(f"unexpected column names in Casdoor's record table: {kept}")
        db.execute("PRAGMA secure_delete = ON")
        db.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")  # re-made: the columns may change
        values = ", ".join(_stripped(column, "NEW") for column in kept)
        # S608: only Casdoor's own column names (checked above) and constants are spliced in
        create = f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON record WHEN NEW.object != '' OR instr(NEW.request_uri, '?') > 0 BEGIN INSERT INTO record ({', '.join(kept)}) VALUES ({values}); SELECT RAISE(IGNORE); END"  # noqa: S608, E501
        db.execute(create)
        path_only = _PATH_ONLY.format(uri="request_uri")
        strip = f"UPDATE record SET object = '', request_uri = {path_only} WHERE object != '' OR instr(request_uri, '?') > 0"  # noqa: S608, E501
        cursor = db.execute(strip)
        return cursor.rowcount


#: PostgreSQL: the row is stripped before it is written (inserts and updates alike)
_PG_FUNCTION = f"""CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.object := '';
    NEW.request_uri := split_part(NEW.request_uri, '?', 1);
    RETURN NEW;
END $$"""
_PG_TRIGGER = (
    f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON record"
    f" FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
)


def install_record_scrubber_postgres(dsn: str) -> int:
    """The same guarantee in a Casdoor that runs on PostgreSQL (``dsn``: the role owning
    Casdoor's tables). Records written before are stripped and the table rewritten
    (``VACUUM FULL``), so their old row versions do not linger in its pages."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        found = db.execute("SELECT to_regclass('record') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise RuntimeError("Casdoor's record table is missing in its PostgreSQL database")
        with db.transaction():
            db.execute(_PG_FUNCTION)
            db.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON record")
            db.execute(_PG_TRIGGER)
            stripped = db.execute(
                "UPDATE record SET object = '', request_uri = split_part(request_uri, '?', 1)"
                " WHERE object <> '' OR strpos(request_uri, '?') > 0"
            ).rowcount
        if stripped:
            db.execute("VACUUM FULL record")
        return stripped

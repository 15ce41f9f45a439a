"""Keep request bodies and query strings out of Casdoor's ``record`` table.

Casdoor (v1.1000.0, ``object/record.go``) stores every POST's body in ``record.object`` and
its full request URI in ``record.request_uri``. It masks only JSON ``"password":"..."``,
so a form-encoded password grant (``grant_type=password&password=...``), a
``set-password`` form, a ``client_secret`` or a signed-up user's password hash land there
in clear. It has no switch to stop that (``logPostOnly`` only drops GETs; records go to
casvisor instead only when one is configured), so the stack installs a SQLite trigger in
Casdoor's own database: every record keeps who, what, when and the answer, never the body
or the query string. The trigger writes a stripped copy and drops the original insert, so a
secret never reaches a database page (an ``AFTER INSERT`` update would leave it in free
space).
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

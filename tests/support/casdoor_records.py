"""Casdoor's ``record`` table after refused password grants: the requests are recorded (who,
what, when) but no password, query string or client secret is kept. One check for each
database engine Casdoor runs on; each test passes its engine's way of reading the table."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx

from hanzo_stack.casdoor.server import CasdoorServer

#: rows of ``record`` with an id above the one given, oldest first
RecordReader = Callable[[int], list[dict[str, object]]]


def assert_refused_grants_leave_no_secret(
    casdoor: CasdoorServer, records: RecordReader, since_id: int
) -> tuple[str, str]:
    """Send two refused password grants (password in the body, and in the query string),
    wait for Casdoor to record them, and check the records; returns the two passwords so a
    caller can also look for them in the database's files."""
    password = f"pw-{secrets.token_hex(12)}"
    query_password = f"qpw-{secrets.token_hex(12)}"
    token_url = f"{casdoor.url}/api/login/oauth/access_token"
    refused = httpx.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": casdoor.client_id,
            "client_secret": casdoor.client_secret,
            "username": "nobody-here",
            "password": password,
        },
        timeout=10,
    )
    assert "access_token" not in refused.json()  # the grant was refused
    httpx.post(
        token_url,
        params={"grant_type": "password", "username": "nobody", "password": query_password},
        data={"client_id": casdoor.client_id},
        timeout=10,
    )
    # Casdoor writes records from a goroutine after answering: wait, bounded
    # (wait for the two grants themselves: other records, written meanwhile by other
    # requests, must not end the wait early)
    deadline = time.monotonic() + 10

    def grants_of(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [row for row in rows if row["action"] == "login/oauth/access_token"]

    rows = records(since_id)
    while len(grants_of(rows)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = records(since_id)
    grants = grants_of(rows)
    assert len(grants) == 2  # the requests are still recorded: who, what, when
    assert all(row["request_uri"] == "/api/login/oauth/access_token" for row in grants)
    assert all(row["object"] == "" for row in grants)
    for row in rows:
        for secret in (password, query_password, casdoor.client_secret):
            assert secret not in str(row)
    return password, query_password

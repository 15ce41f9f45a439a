"""What the real Casdoor exposes: nothing listens beyond loopback, RADIUS is off, and its
``record`` table never keeps a password, a client secret or a query string."""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from hanzo_stack.casdoor.server import CasdoorServer
from tests.support.casdoor_records import assert_refused_grants_leave_no_secret

TCP_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net's local address: host byte order per 32-bit word (little endian here)."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    found = ipaddress.ip_address(words)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped:
        return found.ipv4_mapped
    return found


def _bound_sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every listening TCP and every bound UDP socket of ``pid``."""
    inodes = _socket_inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (proto.startswith("tcp") and state != TCP_LISTEN):
                continue
            host, port = local.split(":")
            found.append((proto, str(_address(host)), int(port, 16)))
    return found


def test_casdoor_listens_on_loopback_only_and_radius_is_off(casdoor: CasdoorServer) -> None:
    pid = casdoor.running_pid()
    assert pid is not None
    bound = _bound_sockets(pid)
    assert ("tcp", "127.0.0.1", casdoor.port) in bound  # the walk sees Casdoor's sockets
    beyond = [entry for entry in bound if not ipaddress.ip_address(entry[1]).is_loopback]
    assert beyond == []
    # no UDP at all: RADIUS (the only UDP listener in Casdoor) never opened
    assert [entry for entry in bound if entry[0].startswith("udp")] == []
    assert "StartRadiusServer() failed" in casdoor.state.log_path.read_text(errors="replace")


def _records(db_path: Path, since_id: int) -> list[dict[str, object]]:
    with sqlite3.connect(db_path, timeout=10) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM record WHERE id > ? ORDER BY id", (since_id,))
        return [dict(row) for row in rows]


def _last_record_id(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return int(db.execute("SELECT coalesce(max(id), 0) FROM record").fetchone()[0])


def test_refused_password_grant_leaves_no_secret_in_casdoor_records(
    casdoor: CasdoorServer,
) -> None:
    db_path = casdoor.state.db_path
    since = _last_record_id(db_path)
    password, query_password = assert_refused_grants_leave_no_secret(
        casdoor, lambda since_id: _records(db_path, since_id), since
    )
    stored = b"".join(
        path.read_bytes() for path in db_path.parent.glob(db_path.name + "*") if path.is_file()
    )
    for secret in (password, query_password):
        assert secret.encode() not in stored  # not in any page, journal or WAL either


def test_requests_made_while_the_database_is_read_are_still_recorded(
    casdoor: CasdoorServer,
) -> None:
    """Casdoor records each request from a goroutine of its own; on SQLite a write that met
    a reader's lock (an operator's query, a backup, this suite's record checks) failed at
    once and the record was lost, until the stack gave Casdoor a busy timeout."""
    db_path = casdoor.state.db_path
    since = _last_record_id(db_path)
    token_url = f"{casdoor.url}/api/login/oauth/access_token"
    data = {"grant_type": "password", "client_id": casdoor.client_id,
            "username": "nobody-here", "password": "wrong"}  # fmt: skip
    reader = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM record").fetchone()  # holds a shared lock
        with ThreadPoolExecutor(max_workers=3) as pool:
            sent = [pool.submit(httpx.post, token_url, data=data, timeout=30) for _ in range(3)]
            time.sleep(1.0)  # Casdoor's writes meet the lock meanwhile
            reader.execute("COMMIT")
            assert all(future.result().status_code < 500 for future in sent)
    finally:
        reader.close()
    deadline = time.monotonic() + 15
    grants: list[dict[str, object]] = []
    while len(grants) < 3 and time.monotonic() < deadline:
        grants = [r for r in _records(db_path, since) if r["action"] == "login/oauth/access_token"]
        time.sleep(0.1)
    assert len(grants) == 3

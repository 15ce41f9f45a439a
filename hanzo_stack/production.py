"""The production profile (``hanzo up --profile production``): the default stack's parts on
engines that scale, on this machine.

What changes against the default profile, and nothing else:

- **PostgreSQL** (:mod:`hanzo_stack.postgres`, as the unprivileged ``hanzo-pg`` user) holds
  Casdoor's state, the sidecar's key store and the memory service's memories, one database
  each with its own owner role (migrations) and application role (no DDL; row-level
  security binds the memory role).
- **Two memory replicas** (``memory`` and ``memory_b``) on the ``postgres`` backend behind
  one nginx ``upstream``: stateless, so a write through either is seen by both at once,
  and nginx passes a request a dead replica refused to the other.
- **Two plugin processes** (``gateway``, ``gateway_b``) and **two sidecars** (``sidecar``,
  ``sidecar_b``, both on the PostgreSQL key store) behind nginx ``upstream`` blocks the
  same way: the auth subrequest goes to the other plugin when one refuses the connection.
  Both plugins verify keys at both sidecars (``sidecar_urls``: ``sidecar`` first, the
  other when one refuses, times out or answers 5xx), and ``sidecar_b`` shares the
  self-service key API's traffic behind nginx.
- **The limiter on a three-primary Valkey cluster** (:class:`hanzo_stack.valkey.
  ValkeyCluster` on fixed ports): counts shared by every plugin process, keys hash-tagged.

Every one of them is a supervised part like the others, on a port kept in ``ports.json``.
The profile is kept in ``<state>/profile`` so ``down`` and ``status`` from a later shell
know the parts, and a state dir never silently changes engines under its data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

from hanzo_contract.settings import ensure_secret
from hanzo_stack.postgres import Database, PostgresServer
from hanzo_stack.process import LOOPBACK, tcp_open
from hanzo_stack.supervisor import Part
from hanzo_stack.valkey import ValkeyCluster

Profile = Literal["default", "production"]
PROFILES: tuple[Profile, ...] = ("default", "production")

#: the second memory replica (the first is the default profile's ``memory``)
MEMORY_REPLICAS = ("memory", "memory_b")
#: the second plugin process and the second sidecar, each beside the default profile's
GATEWAY_REPLICAS = ("gateway", "gateway_b")
SIDECAR_REPLICAS = ("sidecar", "sidecar_b")
#: each added replica -> the default part it doubles (same command, its own port)
REPLICA_OF = {"memory_b": "memory", "gateway_b": "gateway", "sidecar_b": "sidecar"}
VALKEY_NODES = ("valkey0", "valkey1", "valkey2")
#: every port the profile adds to ``ports.json`` (a cluster node has a client and a bus port)
PORT_NAMES = (
    "postgres",
    "memory_b",
    "memory_b_grpc",
    "gateway_b",
    "sidecar_b",
    *VALKEY_NODES,
    *(f"{node}_bus" for node in VALKEY_NODES),
)
#: the second replica's gRPC listener (the first one's is the default profile's)
REPLICA_HOSTED_BY = {"memory_b_grpc": "memory_b"}
#: parts with a process and a pid file, started in this order before the default ones
PART_NAMES = ("postgres", *VALKEY_NODES, "memory_b", "sidecar_b", "gateway_b")
#: one database (and role pair) per part that keeps state
DATABASES = {"casdoor": "hanzo_casdoor", "sidecar": "hanzo_sidecar", "memory": "hanzo_memory"}


def read_profile(state_dir: Path) -> Profile | None:
    """The profile a state dir was brought up with (None: never brought up)."""
    path = state_dir / "profile"
    if not path.exists():
        return None
    text = path.read_text().strip()
    if text not in PROFILES:
        raise ValueError(f"{path} names an unknown profile {text!r}")
    return text  # type: ignore[return-value]


def save_profile(state_dir: Path, profile: Profile) -> None:
    """Keep ``profile`` for the state dir; another one on the same dir is refused, as its
    data lives in the other profile's engines."""
    kept = read_profile(state_dir)
    if kept is not None and kept != profile:
        raise ValueError(
            f"{state_dir} runs the {kept!r} profile; its data is there. Use another "
            f"--state-dir for the {profile!r} profile"
        )
    (state_dir / "profile").write_text(profile + "\n")


class ProductionTopology:
    """The profile's engines on the stack's kept ports, and what each part is told."""

    def __init__(self, state_dir: Path, ports: dict[str, int]) -> None:
        self.state_dir = state_dir
        self.ports = ports
        # persistent: as root under a private state dir, the data dir is under
        # /var/lib/hanzo-pg/ (the server user cannot enter the state dir)
        self.postgres = PostgresServer(state_dir / "postgres", ports["postgres"], persist=True)
        self.cluster = ValkeyCluster(
            state_dir / "valkey",
            primaries=len(VALKEY_NODES),
            ports=[p for node in VALKEY_NODES for p in (ports[node], ports[f"{node}_bus"])],
        )

    def database(self, part: str) -> Database:
        """``part``'s database and roles as connection strings (passwords made once, kept
        0600 in the state dir); :meth:`create_databases` makes them real."""
        name = DATABASES[part]
        pg = self.postgres

        def dsn(role: str) -> str:
            return pg.dsn(name, role, ensure_secret(pg.state_dir, f"postgres-{role}.password"))

        return Database(name=name, owner_dsn=dsn(f"{name}_owner"), app_dsn=dsn(f"{name}_app"))

    def create_databases(self) -> None:
        """Every part's database and role pair (idempotent; after each Postgres start)."""
        for name in DATABASES.values():
            self.postgres.create_database(name)

    def config(self) -> dict[str, dict[str, object]]:
        """What each part's ``hanzo.toml`` section gains (merged over the default's)."""
        sidecar, memory = self.database("sidecar"), self.database("memory")
        return {
            "sidecar": {
                "database_url": sidecar.app_dsn,
                "database_migrate_url": sidecar.owner_dsn,
            },
            "memory": {
                "backend": "postgres",
                "postgres_dsn": memory.app_dsn,
                "postgres_migrate_dsn": memory.owner_dsn,
            },
            "gateway": {
                "sidecar_urls": [
                    f"http://{LOOPBACK}:{self.ports[name]}" for name in SIDECAR_REPLICAS
                ],
                "limiter_backend": "redis",
                "redis_url": self.cluster.url,
                "redis_cluster": True,
            },
        }

    def upstream(self, names: tuple[str, ...]) -> str:
        """An nginx ``upstream`` block's servers: each of ``names`` on its kept port. nginx
        passes a request to the other server when one refuses the connection
        (``proxy_next_upstream``'s default ``error``: the request was not sent, so a POST
        moves too; one sent is never re-sent, as ``non_idempotent`` is not set) and rests
        a failed server for ``fail_timeout``."""
        return "; server ".join(
            f"{LOOPBACK}:{self.ports[name]} max_fails=1 fail_timeout=2s" for name in names
        )

    def memory_upstream(self) -> str:
        """The memory ``upstream`` block's servers, both replicas."""
        return self.upstream(MEMORY_REPLICAS)

    def memory_grpc_upstream(self) -> str:
        """The memory gRPC ``upstream`` block's servers: each replica's gRPC listener."""
        return "; server ".join(
            f"{LOOPBACK}:{self.ports[name]} max_fails=1 fail_timeout=2s"
            for name in ("memory_grpc", "memory_b_grpc")
        )

    def parts(self, run_dir: Path, held: Callable[[str], bool]) -> list[Part]:
        """The engines as supervised parts; ``held(name)``: whether a part is held down."""
        pg = self.postgres
        postgres = Part(
            name="postgres",
            port=pg.port,
            url=f"postgresql://{LOOPBACK}:{pg.port}",
            pid_path=run_dir / "postgres.pid",
            spawn=pg.spawn,
            ready=pg.ready,
            after_ready=self.create_databases,
            marker=str(pg.pgdata),
            held=lambda: held("postgres"),
        )
        nodes: list[Part] = []
        for i, (name, node) in enumerate(zip(VALKEY_NODES, self.cluster.nodes, strict=True)):
            last = i == len(VALKEY_NODES) - 1
            nodes.append(
                Part(
                    name=name,
                    port=node.port,
                    url=node.url,
                    pid_path=run_dir / f"{name}.pid",
                    spawn=node.spawn,
                    ready=partial(tcp_open, node.port),
                    # the last node forms the cluster once all three run (or checks it
                    # re-formed by itself after a restart)
                    after_ready=self.cluster.form_if_needed if last else (lambda: None),
                    needs=VALKEY_NODES[:i] if last else (),
                    marker=str(node.data_dir),
                    held=partial(held, name),
                )
            )
        return [postgres, *nodes]

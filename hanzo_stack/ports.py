"""The stack's ports and Casdoor's issuer: chosen once, kept in ``<state>/ports.json``.

Printed URLs, saved credentials and issued JWTs all name a port or the issuer; if a later
``hanzo up`` moved them, all of those would die. So they are state, not a run-time pick:
the first ``up`` chooses free loopback ports and writes them here, and every later ``up``
(and every restart by the supervisor) reuses them. The issuer is Casdoor's ``origin``, a
configured string written here too, never recomputed from a port.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pydantic import BaseModel, Field

from hanzo_contract.settings import write_private
from hanzo_stack.process import LOOPBACK, free_port

#: every port the stack keeps: one per part, plus the gRPC listeners of :data:`HOSTED_BY`
PARTS = (
    "casdoor", "sidecar", "gateway", "memory", "inference", "nginx", "memory_grpc", "nginx_grpc",
    "casdoor_front",
)  # fmt: skip
#: a port that is not a part of its own -> the part whose process listens on it (the memory
#: service's gRPC server; nginx's HTTP/2 listener in front of it; nginx's Casdoor front,
#: deploy/nginx/casdoor-front.conf.template, whose token endpoint is gated)
HOSTED_BY = {"memory_grpc": "memory", "nginx_grpc": "nginx", "casdoor_front": "nginx"}


class StackPorts(BaseModel):
    """Every part's loopback port and Casdoor's origin (the JWT issuer)."""

    ports: dict[str, int] = Field(description="part name -> loopback port")
    casdoor_origin: str

    @classmethod
    def load_or_choose(cls, state_dir: Path, extra: tuple[str, ...] = ()) -> StackPorts:
        """The ports kept in ``state_dir``; any part missing (of :data:`PARTS` and a
        profile's ``extra`` ones) gets a free port (kept once :meth:`save` runs: ``hanzo
        status`` on an empty dir writes nothing).

        A state dir from before this file existed keeps Casdoor's remembered port (and so
        its issuer)."""
        path = state_dir / "ports.json"
        found: StackPorts | None = None
        with contextlib.suppress(OSError, ValueError):
            found = cls.model_validate_json(path.read_text())
        ports = dict(found.ports) if found else {}
        if "casdoor" not in ports:
            with contextlib.suppress(OSError, ValueError):
                ports["casdoor"] = int((state_dir / "casdoor" / "port").read_text())
        taken = set(ports.values())
        for name in (*PARTS, *extra):
            while name not in ports:
                port = free_port()
                if port not in taken:
                    ports[name] = port
                    taken.add(port)
        origin = found.casdoor_origin if found else None
        if origin is None:
            with contextlib.suppress(OSError):
                origin = (state_dir / "casdoor" / "origin").read_text().strip() or None
        return cls(ports=ports, casdoor_origin=origin or f"http://{LOOPBACK}:{ports['casdoor']}")

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / "ports.json"
        text = self.model_dump_json(indent=2)
        if not path.exists() or path.read_text() != text:
            write_private(path, text)  # atomic and durable: the ports (and issuer) stay put

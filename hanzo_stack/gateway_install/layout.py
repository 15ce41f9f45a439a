"""What every renderer needs: the routes grouped by upstream, and the install settings.

A route's upstream is named by its ``audience`` (the receiver its identity assertion is
signed for, so the name already means "who serves this route"); a route with no audience
of its own (the default, accepted by no upstream) goes to the ``default`` upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway_plugins.routes import RouteSpec, RouteTableSpec
from hanzo_contract.assertion import AUDIENCE
from hanzo_stack.gateway_install.errors import InstallError

#: the upstream of routes without an audience of their own
DEFAULT_UPSTREAM = "default"
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")
_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")

Gateway = Literal["nginx", "caddy", "traefik", "apisix", "kong", "envoy"]
GATEWAYS: tuple[str, ...] = ("nginx", "caddy", "traefik", "apisix", "kong", "envoy")


class InstallSettings(BaseModel):
    """Where things listen. Hosts are ``host:port``; nothing here is a secret."""

    model_config = ConfigDict(extra="forbid")

    listen: str = Field(description="host:port the gateway listens on")
    auth: str = Field(description="host:port of the forward-auth service (hanzo gateway serve)")
    #: audience name (or ``default``) -> host:port
    upstreams: dict[str, str] = Field(min_length=1)
    #: request bodies larger than this are refused by the gateway (413)
    body_limit_mb: int = Field(default=64, ge=1, le=4096)
    #: paths answered as server-sent events: unbuffered, long read timeout
    stream_paths: tuple[str, ...] = ("/v1/chat/completions",)
    #: paths whose answer may come late: an import embeds every row before it answers
    #: (minutes for a file near the body limit), where a gateway's usual 60 s (Envoy's 15 s)
    #: would answer 504 while the rows still land. The stack's nginx waits as long.
    slow_paths: tuple[str, ...] = ("/v1/memory/import",)
    slow_read_timeout_seconds: int = Field(default=3600, ge=1)

    @field_validator("listen", "auth")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if not _HOST_PORT.fullmatch(value):
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @field_validator("upstreams")
    @classmethod
    def _upstream_addrs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, addr in value.items():
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name) or not _HOST_PORT.fullmatch(addr):
                raise ValueError(f"upstream {name}={addr}: expected NAME=host:port")
        return value


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One path of the route table as a gateway matches it."""

    path: str  # the route table's pattern
    kind: Literal["exact", "regex", "prefix"]
    upstream: str  # a key of InstallSettings.upstreams
    stream: bool
    methods: tuple[str, ...]
    #: how long the gateway waits for the upstream's answer (``None``: the gateway's default)
    read_timeout_seconds: int | None = None

    @property
    def regex(self) -> str:
        """``^...$`` for the pattern (one ``{name}`` = one segment, ``{rest*}`` = the rest)."""
        out, pos = ["^"], 0
        for m in _SEGMENT.finditer(self.path):
            out.append(re.escape(self.path[pos : m.start()]).replace("\\/", "/"))
            out.append(".*" if m.group(2) else "[^/]+")
            pos = m.end()
        out.append(re.escape(self.path[pos:]).replace("\\/", "/"))
        return "".join(out) + "$"

    @property
    def prefix(self) -> str:
        """The literal part before ``{rest*}`` (``prefix`` routes only)."""
        return self.path[: self.path.index("{")]

    @property
    def ident(self) -> str:
        """A stable id for gateways that key objects by id (``hanzo-v1-memory-id``): APISIX
        ids are at most 64 of ``[a-zA-Z0-9-_.]``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.path.lower()).strip("-")
        return f"hanzo-{slug}"[:64]


def _upstream_of(route: RouteSpec) -> str:
    audience = route.audience if isinstance(route.audience, str) else route.audience[0]
    return DEFAULT_UPSTREAM if audience == AUDIENCE else audience


def _kind(path: str) -> Literal["exact", "regex", "prefix"]:
    segments = list(_SEGMENT.finditer(path))
    if not segments:
        return "exact"
    if len(segments) == 1 and segments[0].group(2) and "{" not in path[: segments[0].start()]:
        return "prefix"
    return "regex"


@dataclass(frozen=True, slots=True)
class Layout:
    """The routes in table order, one per path, and the settings they are rendered with."""

    routes: tuple[ProxyRoute, ...]
    settings: InstallSettings

    @property
    def used_upstreams(self) -> list[str]:
        """Upstream names in first-use order (the default last when it serves the rest)."""
        names = list(dict.fromkeys(route.upstream for route in self.routes))
        if self.fallback and DEFAULT_UPSTREAM not in names:
            names.append(DEFAULT_UPSTREAM)
        return names

    @property
    def fallback(self) -> str | None:
        """host:port for paths no route names (the plugin still decides on them first)."""
        return self.settings.upstreams.get(DEFAULT_UPSTREAM)

    def addr(self, upstream: str) -> str:
        return self.settings.upstreams[upstream]


def is_grpc_method(path: str) -> bool:
    """A gRPC method's path (``/package.Service/Method``): those need an HTTP/2 listener and
    ``grpc_pass`` to the memory service's gRPC port (the stack's nginx has one:
    ``deploy/nginx/stack.conf.template``), not a route on the HTTP listener rendered here."""
    first = path.lstrip("/").split("/", 1)[0]
    return "." in first and first[:1].islower() and first.rsplit(".", 1)[-1][:1].isupper()


def build_layout(table: RouteTableSpec, settings: InstallSettings) -> Layout:
    """Each distinct path once, with its upstream; an upstream nobody named is an error
    (a route silently sent nowhere would be a 404 the operator finds in production)."""
    by_path: dict[str, ProxyRoute] = {}
    for route in table.routes:
        if is_grpc_method(route.path):
            continue
        upstream = _upstream_of(route)
        methods = tuple(route.methods)
        seen = by_path.get(route.path)
        if seen is not None:
            if seen.upstream != upstream:
                raise InstallError(
                    f"{route.path}: routed to both {seen.upstream} and {upstream}; one path"
                    " has one upstream"
                )
            by_path[route.path] = ProxyRoute(
                seen.path,
                seen.kind,
                upstream,
                seen.stream,
                seen.methods + methods,
                seen.read_timeout_seconds,
            )
            continue
        if upstream not in settings.upstreams:
            hint = f"--upstream {upstream}=HOST:PORT"
            raise InstallError(f"route {route.path} goes to upstream {upstream!r}: give {hint}")
        stream = route.path in settings.stream_paths
        slow = settings.slow_read_timeout_seconds if route.path in settings.slow_paths else None
        by_path[route.path] = ProxyRoute(
            route.path, _kind(route.path), upstream, stream, methods, slow
        )
    return Layout(tuple(by_path.values()), settings)


def load_layout(routes_file: Path, settings: InstallSettings) -> Layout:
    import yaml
    from pydantic import ValidationError

    try:
        table = RouteTableSpec.model_validate(yaml.safe_load(routes_file.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InstallError(f"route table {routes_file}: {exc}") from None
    return build_layout(table, settings)


def one_upstream(listen: str, auth: str, upstream: str, body_limit_mb: int = 1) -> Layout:
    """Every path to one upstream, chat streamed: the tests' and the benchmark's gateway."""
    settings = InstallSettings(
        listen=listen,
        auth=auth,
        upstreams={DEFAULT_UPSTREAM: upstream},
        body_limit_mb=body_limit_mb,
    )
    chat = ProxyRoute(settings.stream_paths[0], "exact", DEFAULT_UPSTREAM, True, ("POST",))
    return Layout((chat,), settings)

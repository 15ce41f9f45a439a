"""Traefik v3: a static ``traefik.yml`` and a file-provider ``dynamic.yml``.

Every router carries the ``hanzo-auth`` ForwardAuth middleware: Traefik sends the original
method and URI as ``X-Forwarded-Method``/``X-Forwarded-Uri`` (``trustForwardHeader:
false``: a client's own never count), returns any non-2xx answer to the client as it is,
and deletes every ``authResponseHeaders`` name from the request before copying the
plugin's value, so a client-sent ``X-User-Id`` never reaches an upstream. A catch-all router
at the lowest priority keeps the plugin in front of paths no route names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_stack.gateway_install.layout import Layout, ProxyRoute

MIDDLEWARES = ["hanzo-auth", "hanzo-body-limit"]
_HEADER = (
    "# Rendered by `hanzo gateway install traefik` from a route table: edit the table and\n"
    "# render again rather than this file (tests/deploy checks the two agree).\n"
)


def _rule(route: ProxyRoute) -> str:
    if route.kind == "exact":
        return f"Path(`{route.path}`)"
    if route.kind == "prefix":
        return f"PathPrefix(`{route.prefix}`)"
    return f"PathRegexp(`{route.regex}`)"


def dynamic(layout: Layout) -> dict[str, Any]:
    settings = layout.settings
    routers: dict[str, Any] = {}
    count = len(layout.routes)
    for index, route in enumerate(layout.routes):
        # exact paths first, then patterns, each in table order (Traefik's default order is
        # by rule length, which would let a pattern shadow a literal)
        base = 3000 if route.kind == "exact" else 2000
        routers[route.ident] = {
            "rule": _rule(route),
            "entryPoints": ["web"],
            "middlewares": list(MIDDLEWARES),
            "service": route.upstream,
            "priority": base + count - index,
        }
    routers["hanzo-any-other-path"] = {
        "rule": "PathPrefix(`/`)",
        "entryPoints": ["web"],
        "middlewares": list(MIDDLEWARES),
        "service": "default" if layout.fallback else "noop@internal",
        "priority": 1,
    }
    services: dict[str, Any] = {}
    for name in layout.used_upstreams:
        service: dict[str, Any] = {"servers": [{"url": f"http://{layout.addr(name)}"}]}
        if any(route.stream and route.upstream == name for route in layout.routes):
            # server-sent events: every write reaches the client at once
            service["responseForwarding"] = {"flushInterval": "-1ms"}
        services[name] = {"loadBalancer": service}
    return {
        "http": {
            "middlewares": {
                "hanzo-auth": {
                    "forwardAuth": {
                        "address": f"http://{settings.auth}/auth",
                        "trustForwardHeader": False,
                        "authResponseHeaders": list(IDENTITY_HEADERS),
                    }
                },
                "hanzo-body-limit": {
                    "buffering": {"maxRequestBodyBytes": settings.body_limit_mb * 1024 * 1024}
                },
            },
            "routers": routers,
            "services": services,
        }
    }


def static(layout: Layout, config_dir: Path) -> dict[str, Any]:
    return {
        "entryPoints": {"web": {"address": layout.settings.listen}},
        "providers": {"file": {"filename": str(config_dir / "dynamic.yml")}},
        "log": {"level": "WARN"},
    }


def render(layout: Layout, config_dir: Path) -> dict[str, str]:
    """``config_dir``: where Traefik will read the files (``/etc/traefik`` in a container)."""

    def dump(data: dict[str, Any]) -> str:
        return _HEADER + yaml.safe_dump(data, sort_keys=False, width=100)

    return {
        "traefik.yml": dump(static(layout, config_dir)),
        "dynamic.yml": dump(dynamic(layout)),
    }

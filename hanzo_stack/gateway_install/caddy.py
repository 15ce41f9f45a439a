"""Caddy: ``deploy/caddy/Caddyfile.template`` with a path matcher and a proxy per route.

``forward_auth`` runs first inside the one ``route`` block, for every path; the proxies
follow in table order, so no path reaches an upstream without the plugin's decision, and
a path no route names gets the default upstream or a JSON 404 after the plugin saw it.
"""

from __future__ import annotations

from hanzo_stack.gateway_install.layout import Layout, ProxyRoute
from hanzo_stack.gateway_install.templates import DEPLOY_DIR, fill

_NOT_FOUND = (
    "\t\theader Content-Type application/json\n"
    "\t\theader Cache-Control no-store\n"
    '\t\trespond `{"error":{"code":"not_found","message":"no such route",'
    '"request_id":"{http.request.header.X-Request-Id}"}}` 404\n'
)


def _matcher(index: int, route: ProxyRoute) -> str:
    if route.kind == "exact":
        spec = f"path {route.path}"
    elif route.kind == "prefix":
        spec = f"path {route.prefix}*"
    else:
        spec = f"path_regexp {route.regex}"
    comment = f"\t# {' '.join(route.methods)} {route.path} -> {route.upstream}\n"
    return f"{comment}\t@hanzo_r{index} {spec}\n"


def proxy(
    addr: str, matcher: str = "", stream: bool = False, read_timeout: int | None = None
) -> str:
    """One ``reverse_proxy``: the plugin's RateLimit answer goes to the client, never to the
    upstream, and the upstream's own RateLimit headers never reach the client. A slow
    route's (``read_timeout``) wait is bounded like the stack's nginx bounds it."""
    target = f"{matcher} {addr}" if matcher else addr
    lines = [
        f"\t\treverse_proxy {target} {{",
        "\t\t\theader_up -X-Hanzo-RateLimit",
        "\t\t\theader_up -X-Hanzo-RateLimit-Policy",
        "\t\t\theader_down -RateLimit",
        "\t\t\theader_down -RateLimit-Policy",
    ]
    if stream:
        lines.append("\t\t\tflush_interval -1")  # server-sent events, each as it comes
    if read_timeout is not None:
        lines += [
            "\t\t\ttransport http {",
            f"\t\t\t\tresponse_header_timeout {read_timeout}s",
            f"\t\t\t\tread_timeout {read_timeout}s",
            "\t\t\t}",
        ]
    lines.append("\t\t}")
    return "\n".join(lines) + "\n"


def render(layout: Layout) -> dict[str, str]:
    matchers = "".join(_matcher(i, route) for i, route in enumerate(layout.routes))
    proxies = "".join(
        proxy(layout.addr(route.upstream), f"@hanzo_r{i}", route.stream, route.read_timeout_seconds)
        for i, route in enumerate(layout.routes)
    )
    proxies += proxy(layout.fallback) if layout.fallback else _NOT_FOUND
    conf = fill(
        (DEPLOY_DIR / "caddy" / "Caddyfile.template").read_text(),
        {
            "MATCHERS": matchers,
            "PROXIES": proxies,
            "LISTEN": layout.settings.listen,
            "AUTH": layout.settings.auth,
            "BODY_LIMIT": f"{layout.settings.body_limit_mb}MB",
            "BODY_LIMIT_BYTES": str(layout.settings.body_limit_mb * 1000 * 1000),
        },
    )
    return {"Caddyfile": conf}

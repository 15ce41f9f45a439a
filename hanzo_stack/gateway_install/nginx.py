"""nginx: ``deploy/nginx/nginx.conf.template`` with an upstream block and a location per route.

The auth integration itself (the subrequest, the identity headers set from the plugin's
answer, the JSON error pages) stays in the two ``hanzo-*.conf`` includes, copied verbatim:
every location includes ``hanzo-protect.conf``, so none can proxy without the decision.
Paths no route names still go through the plugin (it denies them, or refuses a dot-segment
path with 400) before the default upstream or a JSON 404.
"""

from __future__ import annotations

import re
from pathlib import Path

from hanzo_stack.gateway_install.layout import Layout, ProxyRoute
from hanzo_stack.gateway_install.templates import DEPLOY_DIR, fill

INCLUDES = ("hanzo-auth-locations.conf", "hanzo-protect.conf")


def _upstream_block(name: str, addr: str) -> str:
    return (
        f"    upstream hanzo_up_{_ident(name)} {{\n"
        f"        server {addr};\n"
        "        keepalive 64; keepalive_timeout 4s;\n"
        "    }\n"
    )


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _match(route: ProxyRoute) -> str:
    if route.kind == "exact":
        return f"= {route.path}"
    return f'~ "{route.regex}"'


def _location(
    match: str, upstream: str, stream: bool, comment: str, read_timeout: int | None = None
) -> str:
    lines = [
        f"        # {comment}",
        f"        location {match} {{",
        "            include {{PREFIX}}/hanzo-protect.conf;",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $host;",
    ]
    if stream:
        # server-sent events: each event reaches the client as the upstream sends it
        lines += [
            "            proxy_buffering off;",
            "            proxy_cache off;",
            "            proxy_read_timeout 300s;",
        ]
    if read_timeout is not None:
        # a slow answer (an import embeds every row first): wait for it, not 504 at 60 s
        lines.append(f"            proxy_read_timeout {read_timeout}s;")
    lines += [f"            proxy_pass http://hanzo_up_{_ident(upstream)};", "        }", ""]
    return "\n".join(lines) + "\n"


# no route names this path: the plugin decides first (it denies it), then a JSON 404
_NOT_FOUND = """        # any other path: the plugin's decision, then a JSON 404
        location / {
            include {{PREFIX}}/hanzo-protect.conf;
            error_page 404 = @hanzo_404;
            try_files /.hanzo-no-route =404;
        }

        location @hanzo_404 {
            internal;
            default_type application/json;
            add_header Cache-Control no-store always;
            add_header X-Request-Id $hanzo_request_id always;
            return 404 '{"error":{"code":"not_found","message":"no such route",\
"request_id":"$hanzo_request_id"}}';
        }
"""


def locations(layout: Layout) -> str:
    out = []
    for route in layout.routes:
        comment = f"{' '.join(route.methods)} {route.path} -> {route.upstream}"
        if route.stream:
            comment += " (streamed)"
        out.append(
            _location(
                _match(route), route.upstream, route.stream, comment, route.read_timeout_seconds
            )
        )
    if layout.fallback:
        out.append(_location("/", "default", False, "any other path -> default"))
    else:
        out.append(_NOT_FOUND)
    return "".join(out)


def render(
    layout: Layout, prefix: Path, workers: int = 1, extra_servers: str = ""
) -> dict[str, str]:
    """``{file name: text}`` for a config dir at ``prefix`` (absolute: nginx reads it there)."""
    upstreams = "".join(_upstream_block(name, layout.addr(name)) for name in layout.used_upstreams)
    conf = fill(
        (DEPLOY_DIR / "nginx" / "nginx.conf.template").read_text(),
        {
            "UPSTREAMS": upstreams,
            "LOCATIONS": locations(layout),
            "EXTRA_SERVERS": extra_servers,
            "LISTEN": layout.settings.listen,
            "AUTH": layout.settings.auth,
            "WORKERS": str(workers),
            "BODY_LIMIT": f"{layout.settings.body_limit_mb}m",
            "PREFIX": str(prefix),
        },
    )
    files = {"nginx.conf": conf}
    for name in INCLUDES:
        files[name] = (DEPLOY_DIR / "nginx" / name).read_text()
    return files

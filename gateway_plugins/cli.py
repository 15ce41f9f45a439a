"""``hanzo gateway ...``: run the forward-auth service."""

from __future__ import annotations

from typing import Any

import typer

from hanzo_contract import jsonlog, telemetry

#: how uvicorn serves an auth app (the plugin, and the floor ``scripts/bench_gateway.py``
#: compares it with): uvloop and httptools (uvicorn[standard]); no ``Server``/``Date``
#: header, which no gateway reads from an auth answer and which uvicorn would check and
#: write on every one; no uvicorn access line (the app writes its own, ``access_log.py``);
#: no rewriting of the client address from forwarded headers (the plugin trusts them only
#: from its own ``trusted_proxies``, judged against the real peer). The plugin adds its
#: protocol, ``http_protocol.AuthHttpProtocol``, which answers the auth endpoints in place.
SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "server_header": False,
    "date_header": False,
    "access_log": False,
    "proxy_headers": False,
}

cli = typer.Typer(
    help="Gateway auth/quota plugins: the forward-auth service.", no_args_is_help=True
)


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8200, help="port to listen on"),
    log_level: str = typer.Option("info", help="log level"),
    access_log: bool = typer.Option(
        True, help="one JSON line per request (nginx's access log has the same request id)"
    ),
) -> None:
    """Serve the forward-auth endpoints (/auth, /auth/nginx, /envoy/..., /metrics)."""
    import atexit
    import logging

    import uvicorn

    from gateway_plugins.access_log import AccessLog
    from gateway_plugins.build import build_core
    from gateway_plugins.forward_auth import create_app
    from gateway_plugins.http_protocol import AuthHttpProtocol
    from gateway_plugins.settings import GatewaySettings

    jsonlog.configure("gateway", log_level.upper())
    telemetry.setup("gateway")
    settings = GatewaySettings()
    access = None
    # an access line is an info line: ``--log-level warning`` drops it, as it did uvicorn's
    if access_log and logging.getLevelName(log_level.upper()) <= logging.INFO:
        access = AccessLog(
            "gateway",
            max_lines=settings.access_log_max_lines,
            flush_seconds=settings.access_log_flush_seconds,
        )
        atexit.register(access.flush)  # the lifespan flushes on SIGTERM/SIGINT; this, else
    app = create_app(
        build_core(settings),
        settings.charge_token.get_secret_value(),
        tuple(settings.trusted_proxies),
        access,
    )
    options = (
        {**SERVER_OPTIONS, "http": AuthHttpProtocol} if settings.answer_in_place else SERVER_OPTIONS
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, **options)


@cli.command("routes")
def show_routes(
    path: str = typer.Argument(..., help="path to check, e.g. /v1/memory/store"),
    method: str = typer.Option("GET"),
) -> None:
    """Show which permission the configured route table requires for METHOD PATH."""
    from gateway_plugins.routes import RouteTable
    from gateway_plugins.settings import GatewaySettings

    match = RouteTable.load(GatewaySettings().routes_file).match(method.upper(), path)
    if match is None:
        typer.echo("denied: no route")
    else:
        typer.echo("public" if match.public else f"requires {match.permission}")

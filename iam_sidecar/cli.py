"""The sidecar's typer CLI. The lead mounts ``tenants_cli``, ``keys_cli``, ``audit_cli``
and ``sidecar_cli`` under the root ``hanzo`` command; ``cli`` bundles them for
``python -m iam_sidecar``. Each command group lives beside what it drives.
"""

from __future__ import annotations

import typer

from hanzo_contract import jsonlog, telemetry
from iam_sidecar.keys.cli import keys_cli
from iam_sidecar.records.cli import audit_cli
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.tenants.cli import tenants_cli

__all__ = ["audit_cli", "cli", "keys_cli", "sidecar_cli", "tenants_cli"]

cli = typer.Typer(help="Hanzo IAM sidecar: tenants, API keys, audit.", no_args_is_help=True)
sidecar_cli = typer.Typer(help="Run the IAM sidecar server.", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(8090, help="Listen port."),
    log_level: str = typer.Option("info", help="Log level (info: one access line a request)."),
) -> None:
    """Serve verification, self-service keys and ops endpoints; reconcile on an interval."""
    import uvicorn

    from iam_sidecar.http.app import build_app

    # JSON lines, the access log's included: a key a client puts in a query is scrubbed
    jsonlog.configure("sidecar", log_level.upper())
    telemetry.setup("sidecar")
    uvicorn.run(
        build_app(SidecarSettings()), host=host, port=port, log_level=log_level, log_config=None
    )


sidecar_cli.command("serve")(serve)
cli.command("serve")(serve)

cli.add_typer(sidecar_cli, name="sidecar")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(tenants_cli, name="tenants")

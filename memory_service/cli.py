"""``python -m memory_service serve``: run the memory API with uvicorn.

:func:`make_cli` takes what turns settings into the served app, so the composition root
(``hanzo memory-service``) reuses these commands and adds direct mode, a composition this
package knows nothing of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from starlette.types import ASGIApp

from hanzo_contract import jsonlog, telemetry
from memory_service.settings import MemorySettings

if TYPE_CHECKING:
    from memory_service.sealing import TenantKeyring

AppBuilder = Callable[[MemorySettings], ASGIApp]


def gateway_app(settings: MemorySettings) -> ASGIApp:
    """The app trusting the gateway's assertion: all this package can serve on its own."""
    if settings.auth_mode == "direct":
        raise typer.BadParameter(
            "auth_mode 'direct' puts the gateway's decision core in front of the app; "
            "run it with `hanzo memory-service serve` (python -m hanzo_stack memory-service serve)",
            param_hint="HANZO_MEMORY_AUTH_MODE",
        )
    from memory_service.app import create_app

    return create_app(settings)


def _keyring(settings: MemorySettings) -> TenantKeyring:
    from memory_service.sealing import keyring_from_file  # cryptography only when used

    if settings.sealing_key_file is None:
        raise typer.BadParameter(
            "no sealing key file configured", param_hint="HANZO_MEMORY_SEALING_KEY_FILE"
        )
    return keyring_from_file(settings.sealing_key_file, settings.data_dir / "data-keys.json")


def make_cli(build: AppBuilder = gateway_app) -> typer.Typer:
    cli = typer.Typer(help="The Hanzo memory service.", no_args_is_help=True)

    @cli.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8600, help="Port to listen on."),
        log_level: str = typer.Option("info", help="Log level (info: one access line a request)."),
    ) -> None:
        """Serve the API; settings: HANZO_MEMORY_* env, then the memory table of HANZO_CONFIG."""
        import uvicorn

        jsonlog.configure("memory", log_level.upper())
        telemetry.setup("memory")
        app = build(MemorySettings())
        uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None)

    @cli.command("rewrap-keys")
    def rewrap_keys() -> None:
        """After a new operator key was made active (the old one still in the key file):
        re-wrap every tenant's data key under it; then the old key can be removed."""
        ring = _keyring(MemorySettings())
        typer.echo(f"re-wrapped {ring.rewrap()} data keys under the active operator key")

    @cli.command("rotate-data-key")
    def rotate_data_key(org: str = typer.Option(..., "--org", help="Organization.")) -> None:
        """A new data key for one tenant: new sensitive content uses it, older stays readable."""
        ring = _keyring(MemorySettings())
        typer.echo(f"{org}: data key {ring.rotate_data_key(org)} is now active")

    @cli.command("own-partition")
    def own_partition(org: str = typer.Option(..., "--org", help="Organization.")) -> None:
        """postgres backend: move one tenant's memories into a partition of its own, with an
        HNSW graph of its own (for a large tenant: its searches no longer filter everyone's
        graph). Runs as the schema owner (HANZO_MEMORY_POSTGRES_MIGRATE_DSN)."""
        import asyncio

        from memory_service.backends.postgres import bulk_load

        settings = MemorySettings()
        if settings.backend != "postgres" or settings.postgres_migrate_dsn is None:
            raise typer.BadParameter(
                "needs the postgres backend and its owner's DSN",
                param_hint="HANZO_MEMORY_BACKEND, HANZO_MEMORY_POSTGRES_MIGRATE_DSN",
            )
        dsn = settings.postgres_migrate_dsn.get_secret_value()
        done = asyncio.run(bulk_load(dsn, org, []))
        typer.echo(
            f"{org}: {done.rows_moved} memories now in {done.partition} "
            f"(indexes {done.index_s:.1f} s, move and attach {done.attach_s:.1f} s)"
        )

    @cli.command("openapi")
    def openapi_cmd() -> None:
        """Print the OpenAPI document."""
        import json

        from memory_service.openapi import openapi_document
        from memory_service.routes import ROUTES

        typer.echo(json.dumps(openapi_document(ROUTES), indent=2))

    return cli


cli = make_cli()

if __name__ == "__main__":
    cli()

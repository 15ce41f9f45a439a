"""``hanzo memory-service serve``: run the memory API with uvicorn."""

from __future__ import annotations

import typer

cli = typer.Typer(help="The Hanzo memory service.", no_args_is_help=True)


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8600, help="Port to listen on."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve the API; settings come from HANZO_MEMORY_* and the [memory] table of HANZO_CONFIG."""
    import uvicorn

    from memory_service.app import create_app
    from memory_service.settings import MemorySettings

    settings = MemorySettings()
    if settings.auth_mode == "direct":
        from gateway_plugins.build import build_core
        from gateway_plugins.inline import InlineAuth
        from gateway_plugins.settings import GatewaySettings

        core = build_core(GatewaySettings())  # makes the assertion key pair if missing
        app = InlineAuth(create_app(settings), core, open_paths=("/healthz", "/openapi.json"))
    else:
        app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


@cli.command("openapi")
def openapi_cmd() -> None:
    """Print the OpenAPI document."""
    import json

    from memory_service.openapi import openapi_document

    typer.echo(json.dumps(openapi_document(), indent=2))


if __name__ == "__main__":
    cli()

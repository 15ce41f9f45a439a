"""``hanzo inference serve``: run the inference gateway."""

from __future__ import annotations

import typer

from hanzo_contract import jsonlog, telemetry

cli = typer.Typer(help="The inference gateway (OpenAI-compatible).", no_args_is_help=True)


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8300, help="port to listen on"),
    log_level: str = typer.Option("info", help="log level (info: one access line a request)"),
) -> None:
    """Serve /v1/chat/completions, /v1/embeddings and /v1/models behind the gateway."""
    import uvicorn

    from inference_gateway.app import create_app

    jsonlog.configure("inference", log_level.upper())
    telemetry.setup("inference")
    uvicorn.run(create_app(), host=host, port=port, log_level=log_level, log_config=None)


@cli.callback()
def _main() -> None:
    """Inference gateway commands."""

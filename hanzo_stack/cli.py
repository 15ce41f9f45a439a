"""The ``hanzo`` command: one entry point, one sub-command per area."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from hanzo_contract.settings import default_state_dir
from hanzo_stack.casdoor_install import CASDOOR_VERSION, CasdoorInstallError, install_casdoor
from hanzo_stack.casdoor_server import CasdoorServer

app = typer.Typer(
    help="Hanzo unified services: IAM on Casdoor, gateway plugins, memory.", no_args_is_help=True
)
casdoor_cli = typer.Typer(help="Install and run the pinned Casdoor server.", no_args_is_help=True)
app.add_typer(casdoor_cli, name="casdoor")

StateDir = typer.Option(
    None,
    "--state-dir",
    envvar="HANZO_STATE_DIR",
    help="Where generated secrets and data live (default ~/.local/state/hanzo).",
)


def _server(state_dir: Path | None, port: int | None = None) -> CasdoorServer:
    return CasdoorServer(state_dir or default_state_dir(), port=port)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@casdoor_cli.command("install")
def casdoor_install() -> None:
    """Build Casdoor from its pinned Go module into the cache (once)."""
    typer.echo(f"installing Casdoor {CASDOOR_VERSION} (a few minutes the first time)...")
    try:
        path = install_casdoor()
    except CasdoorInstallError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"casdoor binary: {path}")


@casdoor_cli.command("start")
def casdoor_start(
    state_dir: Path | None = StateDir,
    port: int | None = typer.Option(None, help="Loopback port (default: free)"),
) -> None:
    """Start Casdoor in the background on a loopback port and wait until healthy."""
    server = _server(state_dir, port)
    try:
        server.start()
    except (CasdoorInstallError, RuntimeError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"casdoor up at {server.url} (pid {server.running_pid()})")
    typer.echo(f"secrets (0600): {server.state.secrets_path}")
    typer.echo(f"log: {server.state.log_path}")


@casdoor_cli.command("stop")
def casdoor_stop(state_dir: Path | None = StateDir) -> None:
    """Stop the Casdoor started from this state dir."""
    server = _server(state_dir)
    if server.running_pid() is None:
        typer.echo("casdoor is not running")
        return
    server.stop()
    typer.echo("casdoor stopped")


@casdoor_cli.command("status")
def casdoor_status(state_dir: Path | None = StateDir) -> None:
    """Say whether Casdoor runs and answers its health check (exit 1 if not)."""
    server = _server(state_dir)
    pid = server.running_pid()
    if pid is None:
        typer.echo("casdoor: stopped")
        raise typer.Exit(1)
    healthy = server.healthy()
    typer.echo(f"casdoor: {'healthy' if healthy else 'unhealthy'} at {server.url} (pid {pid})")
    if not healthy:
        raise typer.Exit(1)

"""The ``hanzo`` command: one entry point, one sub-command per area."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from gateway_plugins.cli import cli as gateway_cli
from hanzo_client.cli import login_cli, mcp_cli, memory_cli
from hanzo_contract.settings import default_state_dir
from hanzo_stack.casdoor.install import CASDOOR_VERSION, CasdoorInstallError, install_casdoor
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import build_casdoor_ui
from hanzo_stack.memory_direct import memory_service_cli
from iam_sidecar.cli import audit_cli, keys_cli, sidecar_cli, tenants_cli

app = typer.Typer(
    help="Hanzo unified services: IAM on Casdoor, gateway plugins, memory.", no_args_is_help=True
)
casdoor_cli = typer.Typer(help="Install and run the pinned Casdoor server.", no_args_is_help=True)
app.add_typer(casdoor_cli, name="casdoor")
app.add_typer(tenants_cli, name="tenants")
app.add_typer(keys_cli, name="keys")
app.add_typer(audit_cli, name="audit")
app.add_typer(sidecar_cli, name="sidecar")
app.add_typer(gateway_cli, name="gateway", help="Run the gateway forward-auth service.")
app.add_typer(memory_service_cli, name="memory-service")
app.add_typer(memory_cli, name="memory")
app.registered_commands += login_cli.registered_commands
app.registered_commands += mcp_cli.registered_commands

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
def casdoor_install(
    ui: bool = typer.Option(False, "--ui", help="Also build Casdoor's admin UI (yarn, once)"),
) -> None:
    """Build Casdoor from its pinned Go module into the cache (once)."""
    typer.echo(f"installing Casdoor {CASDOOR_VERSION} (a few minutes the first time)...")
    try:
        path = install_casdoor()
        typer.echo(f"casdoor binary: {path}")
        if ui:
            typer.echo("building Casdoor's admin UI (several minutes the first time)...")
            typer.echo(f"casdoor admin UI: {build_casdoor_ui()}")
    except CasdoorInstallError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


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


DEMO_SCOPES = ["memory:read", "memory:write", "memory:delete"]


def _demo_owner(tenant_file: Path) -> tuple[str, str]:
    """The first seed user of the first organization in the tenant file."""
    import yaml

    data = yaml.safe_load(tenant_file.read_text())
    for org in data.get("organizations", []):
        for user in org.get("seed_users", org.get("users", [])):
            return org["name"], f"{org['name']}/{user['name']}"
    raise typer.BadParameter(f"{tenant_file} has no seed user for a demo key")


@app.command("up")
def up(
    state_dir: Path | None = StateDir,
    tenant_file: Path | None = typer.Option(None, help="Tenant file to apply"),
    ui: bool = typer.Option(True, help="Serve Casdoor's admin UI if it has been built"),
) -> None:
    """Start Casdoor, sidecar, plugin, memory service and nginx; print how to use them."""
    from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack

    stack = Stack(state_dir or default_state_dir(), progress=typer.echo)
    tenant_file = tenant_file or DEFAULT_TENANT_FILE
    try:
        info = stack.up(tenant_file, ui=ui)
        organization, owner = _demo_owner(tenant_file)
        key_path = stack.mint_demo_key(info, organization, owner, DEMO_SCOPES)
    except (CasdoorInstallError, RuntimeError) as exc:
        typer.echo(f"hanzo up failed: {exc}", err=True)
        stack.down(quiet=True)
        raise typer.Exit(1) from None
    gw = info.gateway_url
    typer.echo(f"""
all healthy.
  gateway (nginx):   {gw}
  casdoor:           {info.casdoor_url}   (admin UI: sign in as built-in/admin)
  admin credentials: {stack.casdoor.state.secrets_path} (0600)
  logs:              {info.logs_dir}
  demo API key for {owner}: {key_path} (0600)

try it:
  KEY=$(cat {key_path})
  curl -s -X POST {gw}/v1/memory/store -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{{"memories":[{{"content":"The deploy window is Tuesday 10:00 UTC"}}]}}'
  curl -s -X POST {gw}/v1/memory/search -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{{"query":"when is the deploy window?"}}'

stop with: hanzo down""")


@app.command("down")
def down(state_dir: Path | None = StateDir) -> None:
    """Stop everything `hanzo up` started."""
    from hanzo_stack.stack import Stack

    Stack(state_dir or default_state_dir(), progress=typer.echo).down()


@app.command("status")
def status(state_dir: Path | None = StateDir) -> None:
    """Health of each part (exit 1 unless all are healthy)."""
    from hanzo_stack.stack import Stack

    health = Stack(state_dir or default_state_dir()).status()
    for name, ok in health.items():
        typer.echo(f"{name:8} {'healthy' if ok else 'DOWN'}")
    if not all(health.values()) or len(health) < 2:
        raise typer.Exit(1)

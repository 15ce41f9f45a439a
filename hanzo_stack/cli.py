"""The ``hanzo`` command: one entry point, one sub-command per area."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from gateway_plugins.cli import cli as gateway_cli
from hanzo_client.cli import login_cli, mcp_cli, memory_cli, session
from hanzo_contract import jsonlog
from hanzo_contract.settings import default_state_dir
from hanzo_stack.casdoor.install import CASDOOR_VERSION, CasdoorInstallError, install_casdoor
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import build_casdoor_ui
from hanzo_stack.gateway_install.cli import install_command, traefik_install_command
from hanzo_stack.invocation import hanzo_command
from hanzo_stack.memory_direct import memory_service_cli
from iam_sidecar.cli import audit_cli, keys_cli, sidecar_cli, tenants_cli
from iam_sidecar.keys.cli import REMOTE_KEYS
from inference_gateway.cli import cli as inference_cli

app = typer.Typer(
    help="Hanzo unified services: IAM on Casdoor, gateway plugins, memory.",
    no_args_is_help=True,
    # `hanzo keys --server/--remote/--token` reach a stack's keys API with the client
    context_settings={"obj": {REMOTE_KEYS: session}},
)
casdoor_cli = typer.Typer(help="Install and run the pinned Casdoor server.", no_args_is_help=True)
app.add_typer(casdoor_cli, name="casdoor")
traefik_cli = typer.Typer(help="Build the pinned Traefik (v3).", no_args_is_help=True)
traefik_cli.command("install")(traefik_install_command)
app.add_typer(traefik_cli, name="traefik")
app.add_typer(tenants_cli, name="tenants")
app.add_typer(keys_cli, name="keys")
app.add_typer(audit_cli, name="audit")
app.add_typer(sidecar_cli, name="sidecar")
gateway_cli.command("install")(install_command)
app.add_typer(
    gateway_cli,
    name="gateway",
    help="Run the gateway forward-auth service; install it into a gateway.",
)
app.add_typer(memory_service_cli, name="memory-service")
app.add_typer(inference_cli, name="inference")
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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            mine = version("hanzo-unified")
        except PackageNotFoundError:
            mine = "unknown"
        typer.echo(f"hanzo {mine} (casdoor {CASDOOR_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    _show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
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
        path = install_casdoor(progress=typer.echo)
        typer.echo(f"casdoor binary: {path}")
        if ui:
            typer.echo("building Casdoor's admin UI (several minutes the first time)...")
            typer.echo(f"casdoor admin UI: {build_casdoor_ui(progress=typer.echo)}")
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
    chat_upstream: list[str] = typer.Option(
        [],
        "--chat-upstream",
        help="OpenAI-compatible chat upstream for the inference gateway: "
        "BASE_URL=MODEL[,MODEL...][@ENV_VAR holding its API key]; repeatable.",
    ),
    profile: str | None = typer.Option(
        None,
        help="default (embedded files) or production (PostgreSQL, two memory replicas, "
        "a Valkey cluster); unset: the state dir's own, else default",
    ),
) -> None:
    """Start Casdoor, sidecar, plugin, memory service, inference gateway and nginx under a
    supervisor daemon, or repair a running stack in place (same ports, secrets, demo key);
    print how to use them."""
    from hanzo_stack.production import PROFILES
    from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack, parse_chat_upstream

    if profile is not None and profile not in PROFILES:
        raise typer.BadParameter(f"one of {', '.join(PROFILES)}", param_hint="--profile")
    stack = Stack(
        state_dir or default_state_dir(),
        progress=typer.echo,
        profile=profile,  # type: ignore[arg-type]
    )
    try:
        stack.chat_upstreams = [parse_chat_upstream(spec) for spec in chat_upstream]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--chat-upstream") from None
    tenant_file = tenant_file or DEFAULT_TENANT_FILE
    try:
        install_casdoor(progress=typer.echo)  # the first build takes minutes: say so
        info = stack.up(tenant_file, ui=ui)
        organization, owner = _demo_owner(tenant_file)
        key_path = stack.mint_demo_key(info, organization, owner, DEMO_SCOPES)
    except (CasdoorInstallError, RuntimeError, ValueError) as exc:
        # the stack stays as it is (supervised, same ports): `hanzo status` shows what is
        # down, `hanzo up` again repairs it, `hanzo down` stops it
        typer.echo(f"hanzo up failed: {exc}", err=True)
        raise typer.Exit(1) from None
    gw = info.gateway_url
    hanzo = hanzo_command()
    grpc_target = f"{gw.removeprefix('http://').rsplit(':', 1)[0]}:{info.ports['nginx_grpc']}"
    typer.echo(f"""
all healthy.
  gateway (nginx):   {gw}   (MCP: {gw}/v1/mcp)
  gRPC (nginx):      {grpc_target}   (hanzo.memory.v1, the same keys)
  casdoor:           {info.casdoor_url}   (admin UI: sign in as built-in/admin)
  casdoor front:     {info.casdoor_front_url}   (token endpoint gated; `hanzo login` uses it)
  admin credentials: {stack.casdoor.state.secrets_path} (0600)
  logs:              {info.logs_dir}
  demo API key for {owner}: {key_path} (0600)
  status:            {hanzo} status [--json]   (a part that exits is restarted)

try it:
  KEY=$(cat {key_path})
  curl -s -X POST {gw}/v1/memory/store -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{{"memories":[{{"content":"The deploy window is Tuesday 10:00 UTC"}}]}}'
  curl -s -X POST {gw}/v1/memory/search -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{{"query":"when is the deploy window?"}}'

stop with: {hanzo} down""")


@app.command("down")
def down(state_dir: Path | None = StateDir) -> None:
    """Stop everything `hanzo up` started."""
    from hanzo_stack.stack import Stack

    Stack(state_dir or default_state_dir(), progress=typer.echo).down()


def status_lines(report: dict[str, Any]) -> list[str]:
    """``hanzo status`` as text: one aligned row a part. The name column is as wide as the
    longest name, since the production profile's parts (``memory_b_grpc``) outgrow any
    fixed width."""
    parts: dict[str, dict[str, Any]] = report["parts"]
    states = {name: "healthy" if part["healthy"] else "DOWN" for name, part in parts.items()}
    name_width = max((len(name) for name in parts), default=0)
    state_width = max((len(state) for state in states.values()), default=0)
    lines = [
        f"{name:<{name_width}}  {states[name]:<{state_width}}  {part['url']}  "
        f"restarts={part['restarts']}"
        for name, part in parts.items()
    ]
    sup = report["supervisor_pid"]
    return [*lines, f"supervisor {'pid ' + str(sup) if sup else 'not running'}"]


@app.command("status")
def status(
    state_dir: Path | None = StateDir,
    json_out: bool = typer.Option(False, "--json", help="Every part's URL, pid, restarts"),
) -> None:
    """Health and restarts of each part (exit 1 unless all are healthy)."""
    import json

    from hanzo_stack.stack import Stack

    report = Stack(state_dir or default_state_dir()).report()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        for line in status_lines(report):
            typer.echo(line)
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command("erase")
def erase_command(
    org: str = typer.Option(..., "--org", "-o", help="Organization (tenant)."),
    user: str | None = typer.Option(None, "--user", help="Only this user (default: everyone)."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    state_dir: Path | None = StateDir,
) -> None:
    """Erase every memory and revoke every key of a user, or of a whole organization being
    offboarded; prints the receipt that the audit log keeps (counts, ids hashed)."""
    import asyncio
    import json
    import os

    from gateway_plugins.settings import GatewaySettings
    from hanzo_stack.erase import ErasureFailed, erase
    from hanzo_stack.process import LOOPBACK
    from hanzo_stack.stack import StackInfo, StackLayout
    from iam_sidecar.console import open_key_store
    from iam_sidecar.settings import SidecarSettings

    state = state_dir or default_state_dir()
    os.environ["HANZO_STATE_DIR"] = str(state)
    try:
        info = StackInfo.model_validate_json(StackLayout(state).info_path.read_text())
    except (OSError, ValueError):
        typer.echo(f"no running stack in {state} (run `hanzo up` first)", err=True)
        raise typer.Exit(1) from None
    what = f"user {org}/{user}" if user else f"the whole organization {org}"
    if not yes and not typer.confirm(f"erase every memory and key of {what}?"):
        raise typer.Exit(1)

    async def go() -> dict[str, object]:
        async with open_key_store(SidecarSettings()) as store:
            return await erase(
                store,
                f"http://{LOOPBACK}:{info.ports['memory']}",
                GatewaySettings().resolved_assertion_key_file(),
                org,
                user,
            )

    try:
        receipt = asyncio.run(go())
    except ErasureFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(receipt, indent=2, sort_keys=True))


@app.command("supervise", hidden=True)
def supervise(state_dir: Path | None = StateDir) -> None:
    """The daemon `hanzo up` starts: keeps every part running (restart with backoff)."""
    from hanzo_stack.stack import Stack

    jsonlog.configure("supervisor", logging.INFO)  # httpx (the health probes) at warning
    Stack(state_dir or default_state_dir(), progress=lambda _: None).supervise()


@app.command("backup")
def backup_cmd(
    dest: Path = typer.Argument(..., help="New (or empty) directory for the backup"),
    state_dir: Path | None = StateDir,
) -> None:
    """Consistent online copy of everything that holds state (files 0600, dirs 0700)."""
    from hanzo_stack.backup import BackupError, backup, describe

    try:
        manifest = backup(state_dir or default_state_dir(), dest)
    except (BackupError, OSError) as exc:
        typer.echo(f"hanzo backup failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backed up {describe(manifest)} into {dest}")


@app.command("restore")
def restore_cmd(
    source: Path = typer.Argument(..., help="A directory written by `hanzo backup`"),
    state_dir: Path = typer.Option(..., "--state-dir", help="New (or empty) state dir"),
) -> None:
    """Write a backup into a fresh state dir; then `hanzo up --state-dir` serves it."""
    from hanzo_stack.backup import BackupError, describe, restore

    try:
        manifest = restore(source, state_dir)
    except (BackupError, OSError) as exc:
        typer.echo(f"hanzo restore failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored {describe(manifest)} into {state_dir}")
    typer.echo(f"start it with: hanzo up --state-dir {state_dir}")

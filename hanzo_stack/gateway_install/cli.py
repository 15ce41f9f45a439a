"""``hanzo gateway install GATEWAY --out DIR``: the command line of the renderer."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from hanzo_stack.gateway_install.admin_api import AdminApi
from hanzo_stack.gateway_install.errors import InstallError
from hanzo_stack.gateway_install.install import install
from hanzo_stack.gateway_install.layout import GATEWAYS, InstallSettings, load_layout
from hanzo_stack.gateway_install.templates import DEPLOY_DIR
from hanzo_stack.gateway_install.traefik_build import TRAEFIK_VERSION, install_traefik


def _upstreams(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, addr = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"{value!r}: expected NAME=HOST:PORT", param_hint="--upstream")
        out[name] = addr
    return out


def install_command(
    gateway: str = typer.Argument(..., help=f"one of: {', '.join(GATEWAYS)}"),
    out: Path = typer.Option(..., "--out", help="directory for the rendered configuration"),
    routes: Path = typer.Option(
        DEPLOY_DIR / "stack" / "routes.yaml", help="route table (which paths, which upstream)"
    ),
    listen: str = typer.Option("127.0.0.1:8080", help="host:port the gateway listens on"),
    auth: str = typer.Option("127.0.0.1:8200", help="host:port of `hanzo gateway serve`"),
    upstream: list[str] = typer.Option(
        [],
        help="AUDIENCE=HOST:PORT, once per upstream (hanzo-memory, hanzo-sidecar, "
        "hanzo-inference; `default` for routes without an audience and any other path)",
    ),
    body_limit_mb: int = typer.Option(64, help="larger request bodies are refused (413)"),
    check: bool = typer.Option(True, help="run the gateway's own checker if installed"),
    admin_url: str | None = typer.Option(None, help="APISIX/Kong Admin API base URL: apply"),
    admin_key: str | None = typer.Option(
        None, envvar="HANZO_GATEWAY_ADMIN_KEY", help="Admin API key (or $HANZO_GATEWAY_ADMIN_KEY)"
    ),
    dry_run: bool = typer.Option(False, help="print the Admin API plan, change nothing"),
    config_dir: Path | None = typer.Option(
        None, help="where the gateway will read the files, if not --out (e.g. /etc/traefik)"
    ),
) -> None:
    """Render GATEWAY's configuration from the route table into --out, check it with the
    gateway's own checker, and for APISIX or Kong apply it through --admin-url."""
    if gateway not in GATEWAYS:
        raise typer.BadParameter(f"one of {', '.join(GATEWAYS)}", param_hint="GATEWAY")
    if admin_url and gateway not in ("apisix", "kong"):
        raise typer.BadParameter("only APISIX and Kong have an Admin API", param_hint="--admin-url")
    try:
        settings = InstallSettings(
            listen=listen, auth=auth, upstreams=_upstreams(upstream), body_limit_mb=body_limit_mb
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    admin = AdminApi(gateway, admin_url, admin_key) if admin_url else None  # type: ignore[arg-type]
    try:
        layout = load_layout(routes, settings)
        result = install(gateway, layout, out, check, admin, dry_run, config_dir)
    except InstallError as exc:
        typer.echo(f"gateway install failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for path in result.files:
        typer.echo(f"wrote {path}")
    if result.checked:
        typer.echo(result.checked)
    for step in result.steps:
        verb = step.action if not dry_run or step.action == "unchanged" else f"would {step.action}"
        typer.echo(f"{verb:>13} {step.path}")
    if dry_run and admin is None:
        typer.echo("dry run: nothing written (give --admin-url to see an Admin API plan)")


def traefik_install_command() -> None:
    """Build the pinned Traefik from its Go module into the cache (minutes, once)."""
    typer.echo(f"installing Traefik {TRAEFIK_VERSION} (several minutes the first time)...")
    try:
        typer.echo(f"traefik binary: {install_traefik(progress=typer.echo)}")
    except InstallError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None

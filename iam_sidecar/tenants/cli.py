"""``hanzo tenants validate|plan|apply``: the tenant file against the real Casdoor."""

from __future__ import annotations

from pathlib import Path

import typer

from iam_sidecar.casdoor.factory import casdoor_client
from iam_sidecar.console import JsonOpt, emit_json, fail, open_key_store, run_async
from iam_sidecar.errors import SidecarError
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.tenants.apply import ApplyResult, apply_plan, make_plan
from iam_sidecar.tenants.loader import load_tenant_file
from iam_sidecar.tenants.model import TenantFile
from iam_sidecar.tenants.plan import Plan

tenants_cli = typer.Typer(help="Sync the tenant file into Casdoor.", no_args_is_help=True)

FileArg = typer.Argument(..., exists=False, help="Tenant file (YAML).")
PruneOpt = typer.Option(False, "--prune", help="Also delete managed objects the file omits.")


@tenants_cli.command("validate")
def validate(file: Path = FileArg) -> None:
    """Check the file (schema, references, duplicates) without touching Casdoor."""
    try:
        spec = load_tenant_file(file)
    except SidecarError as exc:
        raise fail(f"{exc.code}: {exc.message}") from None
    typer.echo(f"{file}: ok ({len(spec.organizations)} organizations)")


@tenants_cli.command("plan")
def plan(
    file: Path = FileArg,
    prune: bool = PruneOpt,
    json_out: bool = JsonOpt,
    exit_code: bool = typer.Option(
        False, "--exit-code", help="Exit 2 when Casdoor differs from the file (drift check)."
    ),
) -> None:
    """Print how Casdoor differs from the file (hand edits included)."""

    async def go(settings: SidecarSettings) -> Plan:
        spec = await _load(file)
        async with casdoor_client(settings) as client:
            return await make_plan(
                client, spec, prune=prune, assets_url=settings.casdoor_assets_url
            )

    result = run_async(go)
    if json_out:
        emit_json(result.model_dump())
    else:
        typer.echo(result.render())
    if exit_code and not result.is_noop:
        raise typer.Exit(2)


@tenants_cli.command("apply")
def apply(file: Path = FileArg, prune: bool = PruneOpt, json_out: bool = JsonOpt) -> None:
    """Make Casdoor match the file; applying twice changes nothing the second time."""

    async def go(settings: SidecarSettings) -> ApplyResult:
        spec = await _load(file)
        async with open_key_store(settings) as store, casdoor_client(settings) as client:
            return await apply_plan(
                client, spec, prune=prune, db=store.db, assets_url=settings.casdoor_assets_url
            )

    result = run_async(go)
    if json_out:
        emit_json(result.model_dump())
        return
    if not result.applied:
        typer.echo("no changes: Casdoor already matches the tenant file")
        return
    typer.echo(result.plan.render())
    typer.echo(f"applied {len(result.applied)} change(s)")


async def _load(file: Path) -> TenantFile:
    return load_tenant_file(file)

"""``hanzo keys create|list|show|rotate|revoke``: API keys from the command line.

Creation goes through the issuer (Casdoor checks the owner and its scopes); the other
commands work on the key store alone.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.console import (
    JsonOpt,
    OrgOpt,
    emit_json,
    emit_table,
    parse_duration,
    run_async,
    run_with_key_store,
    when,
)
from iam_sidecar.keys.models import NewKey
from iam_sidecar.settings import SidecarSettings

keys_cli = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)


def _owner(org: str, owner: str) -> str:
    return owner if "/" in owner else f"{org}/{owner}"


def _key_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["prefix"],
            r["name"],
            r["owner"],
            ",".join(r["scopes"]),
            when(r["created_at"]),
            when(r["expires_at"]),
            when(r["last_used_at"]),
            r["state"],
        ]
        for r in records
    ]


_KEY_COLUMNS = ["prefix", "name", "owner", "scopes", "created", "expires", "last used", "state"]


@keys_cli.command("create")
def keys_create(
    org: str = OrgOpt,
    owner: str = typer.Option(..., help="User (or application with --app): name or org/name."),
    name: str = typer.Option(..., help="Key name, unique per owner."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="Scope like memory:read."),
    app: bool = typer.Option(False, "--app", help="Owner is a service application."),
    expires_in: str | None = typer.Option(None, help="Lifetime like 30d, 12h."),
    rpm: int | None = typer.Option(None, help="Per-key requests per minute (overrides plan)."),
    units_per_day: int | None = typer.Option(None, help="Per-key daily quota."),
    units_per_month: int | None = typer.Option(None, help="Per-key monthly quota."),
    tokens_per_day: int | None = typer.Option(None, help="Per-key daily model-token quota."),
    tokens_per_month: int | None = typer.Option(None, help="Per-key monthly token quota."),
    json_out: bool = JsonOpt,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    from iam_sidecar.state import build_state, close_state

    limits = None
    if rpm or units_per_day or units_per_month or tokens_per_day or tokens_per_month:
        limits = Limits(
            requests_per_minute=rpm,
            units_per_day=units_per_day,
            units_per_month=units_per_month,
            tokens_per_day=tokens_per_day,
            tokens_per_month=tokens_per_month,
        )
    expires_at = time.time() + parse_duration(expires_in) if expires_in else None

    async def go(settings: SidecarSettings) -> tuple[str, dict[str, Any]]:
        state = await build_state(settings)
        try:
            plaintext, record = await state.issuer.issue(
                NewKey(
                    organization=org,
                    owner=_owner(org, owner),
                    owner_kind=PrincipalKind.APPLICATION if app else PrincipalKind.USER,
                    name=name,
                    scopes=scope,
                    expires_at=expires_at,
                    limits=limits,
                ),
                actor="cli",
                source="cli",
            )
        finally:
            await close_state(state)
        return plaintext, record.public()

    plaintext, record = run_async(go)
    if json_out:
        emit_json({"key": plaintext, "record": record})
        return
    emit_table("API key created", _KEY_COLUMNS, _key_rows([record]))
    typer.echo(f"\nkey (shown once, store it now): {plaintext}")


@keys_cli.command("list")
def keys_list(
    org: str = OrgOpt,
    owner: str | None = typer.Option(None, help="Only this owner's keys."),
    json_out: bool = JsonOpt,
) -> None:
    """List keys of an organization: prefix, name, scopes, dates, state; never secrets."""
    records = run_with_key_store(lambda s: s.list(org, owner=_owner(org, owner) if owner else None))
    records = [r.public() for r in records]
    if json_out:
        emit_json(records)
    else:
        emit_table(f"API keys of {org}", _KEY_COLUMNS, _key_rows(records))


@keys_cli.command("show")
def keys_show(org: str = OrgOpt, key_id: str = typer.Argument(...), json_out: bool = JsonOpt):
    """Show one key of an organization."""
    record = run_with_key_store(lambda s: s.show(org, key_id.removeprefix("hk-"))).public()
    if json_out:
        emit_json(record)
    else:
        emit_table(f"API key {record['prefix']}", _KEY_COLUMNS, _key_rows([record]))


@keys_cli.command("rotate")
def keys_rotate(
    org: str = OrgOpt,
    key_id: str = typer.Argument(...),
    grace: str = typer.Option("1h", help="How long the old secret stays valid."),
    json_out: bool = JsonOpt,
) -> None:
    """New secret for a key; the old one keeps working for the grace period."""
    kid = key_id.removeprefix("hk-")

    async def go(store: Any) -> tuple[str, dict[str, Any]]:
        plaintext = await store.rotate(org, kid, parse_duration(grace), actor="cli", source="cli")
        return plaintext, (await store.show(org, kid)).public()

    plaintext, record = run_with_key_store(go)
    if json_out:
        emit_json({"key": plaintext, "record": record})
        return
    typer.echo(f"rotated {record['prefix']}; old secret valid until {when(record['grace_until'])}")
    typer.echo(f"new key (shown once, store it now): {plaintext}")


@keys_cli.command("revoke")
def keys_revoke(org: str = OrgOpt, key_id: str = typer.Argument(...), json_out: bool = JsonOpt):
    """Revoke a key at once (gateways drop it within their verify cache TTL)."""
    kid = key_id.removeprefix("hk-")
    record = run_with_key_store(lambda s: s.revoke(org, kid, actor="cli", source="cli")).public()
    if json_out:
        emit_json(record)
    else:
        typer.echo(f"revoked {record['prefix']} ({record['name']})")

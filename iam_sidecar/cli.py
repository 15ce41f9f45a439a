"""The sidecar's typer CLI. The lead mounts ``tenants_cli``, ``keys_cli``, ``audit_cli``
and ``sidecar_cli`` under the root ``hanzo`` command; ``cli`` bundles them for
``python -m iam_sidecar``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.cli_tenants import tenants_cli
from iam_sidecar.cli_util import emit_json, emit_table, parse_duration, run_async, when
from iam_sidecar.settings import SidecarSettings

T = TypeVar("T")

cli = typer.Typer(help="Hanzo IAM sidecar: tenants, API keys, audit.", no_args_is_help=True)
sidecar_cli = typer.Typer(help="Run the IAM sidecar server.", no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)
audit_cli = typer.Typer(help="Query the audit log and usage counters.")

JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
OrgOpt = typer.Option(..., "--org", "-o", help="Organization (tenant).")


def _settings() -> SidecarSettings:
    return SidecarSettings()


_run = run_async


# ---- sidecar serve -----------------------------------------------------------------


def serve(
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(8090, help="Listen port."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve verification, self-service keys and ops endpoints; reconcile on an interval."""
    import uvicorn

    from iam_sidecar.serve import build_app

    uvicorn.run(build_app(_settings()), host=host, port=port, log_level=log_level)


sidecar_cli.command("serve")(serve)
cli.command("serve")(serve)

# ---- keys ---------------------------------------------------------------------------


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
    json_out: bool = JsonOpt,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    from iam_sidecar.app import build_state, close_state

    limits = None
    if rpm or units_per_day or units_per_month:
        limits = Limits(
            requests_per_minute=rpm, units_per_day=units_per_day, units_per_month=units_per_month
        )
    expires_at = time.time() + parse_duration(expires_in) if expires_in else None

    async def go(settings: SidecarSettings) -> tuple[str, dict[str, Any]]:
        state = await build_state(settings)
        try:
            plaintext, record = await state.keys.create(
                organization=org,
                owner=_owner(org, owner),
                owner_kind=PrincipalKind.APPLICATION if app else PrincipalKind.USER,
                name=name,
                scopes=scope,
                expires_at=expires_at,
                limits=limits,
                actor="cli",
                source="cli",
            )
        finally:
            await close_state(state)
        return plaintext, record.public()

    plaintext, record = _run(go)
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
    from iam_sidecar.keystore import KeyStore

    async def go(settings: SidecarSettings) -> list[dict[str, Any]]:
        assert settings.db_path is not None
        store = await KeyStore.open(settings.db_path, settings.hash_secret_bytes)
        try:
            found = await store.list(org, owner=_owner(org, owner) if owner else None)
        finally:
            await store.close()
        return [r.public() for r in found]

    records = _run(go)
    if json_out:
        emit_json(records)
    else:
        emit_table(f"API keys of {org}", _KEY_COLUMNS, _key_rows(records))


def _store_action(
    action: Callable[[Any], Awaitable[T]],
) -> T:
    from iam_sidecar.keystore import KeyStore

    async def go(settings: SidecarSettings) -> T:
        assert settings.db_path is not None
        store = await KeyStore.open(settings.db_path, settings.hash_secret_bytes)
        try:
            return await action(store)
        finally:
            await store.close()

    return _run(go)


@keys_cli.command("show")
def keys_show(org: str = OrgOpt, key_id: str = typer.Argument(...), json_out: bool = JsonOpt):
    """Show one key of an organization."""
    record = _store_action(lambda s: s.show(org, key_id.removeprefix("hk-"))).public()
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

    plaintext, record = _store_action(go)
    if json_out:
        emit_json({"key": plaintext, "record": record})
        return
    typer.echo(f"rotated {record['prefix']}; old secret valid until {when(record['grace_until'])}")
    typer.echo(f"new key (shown once, store it now): {plaintext}")


@keys_cli.command("revoke")
def keys_revoke(org: str = OrgOpt, key_id: str = typer.Argument(...), json_out: bool = JsonOpt):
    """Revoke a key at once (gateways drop it within their verify cache TTL)."""
    kid = key_id.removeprefix("hk-")
    record = _store_action(lambda s: s.revoke(org, kid, actor="cli", source="cli")).public()
    if json_out:
        emit_json(record)
    else:
        typer.echo(f"revoked {record['prefix']} ({record['name']})")


# ---- audit -------------------------------------------------------------------------


@audit_cli.callback(invoke_without_command=True)
def audit_query(
    ctx: typer.Context,
    org: str | None = typer.Option(None, "--org", "-o"),
    action: str | None = typer.Option(None, help="e.g. key.create, request.denied, sync.apply"),
    actor: str | None = typer.Option(None),
    outcome: str | None = typer.Option(None),
    since: str | None = typer.Option(None, help="Only events newer than this, like 1h, 7d."),
    limit: int = typer.Option(50, min=1, max=10_000),
    json_out: bool = JsonOpt,
) -> None:
    """Query the append-only audit log, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    since_ts = time.time() - parse_duration(since) if since else None
    events = _store_action(
        lambda s: s.audit.query(
            organization=org,
            action=action,
            actor=actor,
            outcome=outcome,
            since=since_ts,
            limit=limit,
        )
    )
    if json_out:
        emit_json([e.model_dump() for e in events])
        return
    emit_table(
        "audit log",
        ["when", "actor", "action", "org", "target", "from", "outcome"],
        [
            [when(e.ts), e.actor, e.action, e.organization, e.target, e.source, e.outcome]
            for e in events
        ],
    )


@audit_cli.command("usage")
def audit_usage(
    org: str = OrgOpt,
    day: str | None = typer.Option(None, help="UTC day YYYY-MM-DD (default: all)."),
    level: str | None = typer.Option(None, help="org, user or key"),
    json_out: bool = JsonOpt,
) -> None:
    """Usage per key, user and organization per day: reported requests and denials, and
    the sidecar's own key verifications."""
    rows = _store_action(lambda s: s.usage.query(org, day=day, level=level))
    if json_out:
        emit_json([r.model_dump() for r in rows])
        return
    emit_table(
        f"usage of {org}",
        ["day", "level", "subject", "requests", "denials", "verifications"],
        [[r.day, r.level, r.subject, r.requests, r.denials, r.verifications] for r in rows],
    )


cli.add_typer(sidecar_cli, name="sidecar")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(tenants_cli, name="tenants")

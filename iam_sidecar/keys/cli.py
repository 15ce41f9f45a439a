"""``hanzo keys create|list|show|rotate|revoke``: API keys from the command line.

Two ways to reach the keys:

- **On the sidecar's host** (the default): creation goes through the issuer (Casdoor checks
  the owner and its scopes); the other commands work on the key store alone. ``--org`` is
  required: the operator acts for any organization, as the host's owner.
- **Against a remote stack** (``--server URL``, ``--remote`` for the gateway saved by
  ``hanzo login``, ``--token`` for a signed-in org admin's access token or a key with
  ``keys:manage``): every command is a call to the sidecar's keys API through the gateway
  (``/v1/keys``), so the server decides what the credential may see and mint, exactly as
  for any other client; the CLI adds no power of its own. The same tables are printed.

The HTTP side is the Python client's (``hanzo_client``), which this package may not import:
the composition root (``hanzo_stack``) hands it over as the click context's object under
:data:`REMOTE_KEYS` (a :data:`RemoteOpener`). The sidecar's own CLI has none, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import typer

from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.console import (
    JsonOpt,
    emit_json,
    emit_table,
    fail,
    parse_duration,
    run_async,
    run_with_key_store,
    when,
)
from iam_sidecar.keys.models import NewKey
from iam_sidecar.settings import SidecarSettings

keys_cli = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)


class RemoteKeys(Protocol):
    """The keys API of a stack, over HTTP (the calls ``hanzo_client.HanzoClient`` has)."""

    def list_keys(self) -> list[dict[str, Any]]: ...
    def show_key(self, key_id: str) -> dict[str, Any]: ...
    def create_key(self, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]: ...
    def rotate_key(self, key_id: str, grace_seconds: float | None = None) -> dict[str, Any]: ...
    def revoke_key(self, key_id: str) -> dict[str, Any]: ...


#: ``(server URL or None, token or None)`` -> the keys API, open for one command; it turns
#: the client's errors into a message and exit code 1
RemoteOpener = Callable[[str | None, str | None], AbstractContextManager[RemoteKeys]]
#: where the composition root puts its :data:`RemoteOpener` in the click context's object
REMOTE_KEYS = "remote_keys"

OrgOpt = typer.Option(
    None,
    "--org",
    "-o",
    help="Organization (tenant). Remote: your credential's own is used (list/show check it).",
)
ServerOpt = typer.Option(
    None, "--server", help="A remote stack's gateway URL: use its keys API over HTTP."
)
RemoteOpt = typer.Option(
    False, "--remote", help="Use the keys API of the stack saved by `hanzo login`."
)
TokenOpt = typer.Option(
    None,
    "--token",
    envvar="HANZO_TOKEN",
    help="For the remote keys API: an org admin's access token or a key with keys:manage "
    "(default: the key saved by `hanzo login`).",
)


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


def _remote(
    ctx: typer.Context, server: str | None, remote: bool, token: str | None
) -> AbstractContextManager[RemoteKeys] | None:
    """The remote keys API when asked for (``--server``, ``--remote`` or ``--token``),
    else ``None``: the local key store."""
    if not (server or remote or token):
        return None
    opener = ctx.obj.get(REMOTE_KEYS) if isinstance(ctx.obj, dict) else None
    if opener is None:
        raise fail("the remote keys API is reached with `hanzo keys` (this CLI is local only)")
    return opener(server, token)


def _local_org(org: str | None) -> str:
    if not org:
        raise fail("--org is required on the sidecar's host (or use --server / --remote)")
    return org


def _same_org(org: str | None, records: list[dict[str, Any]]) -> None:
    """A remote credential acts in its own organization only (the server scopes every
    call to it); a listing asked for another ``--org`` is a mistake worth saying."""
    for record in records:
        if org and record["organization"] != org:
            raise fail(
                f"your credential belongs to organization {record['organization']!r}, not {org!r}"
            )


def _print_keys(title: str, records: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        emit_json(records)
    else:
        emit_table(title, _KEY_COLUMNS, _key_rows(records))


def _print_minted(plaintext: str, record: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json({"key": plaintext, "record": record})
        return
    emit_table("API key created", _KEY_COLUMNS, _key_rows([record]))
    typer.echo(f"\nkey (shown once, store it now): {plaintext}")


def _print_rotated(plaintext: str, record: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json({"key": plaintext, "record": record})
        return
    typer.echo(f"rotated {record['prefix']}; old secret valid until {when(record['grace_until'])}")
    typer.echo(f"new key (shown once, store it now): {plaintext}")


def _print_revoked(record: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(record)
    else:
        typer.echo(f"revoked {record['prefix']} ({record['name']})")


@keys_cli.command("create")
def keys_create(
    ctx: typer.Context,
    org: str | None = OrgOpt,
    owner: str | None = typer.Option(
        None, help="User (or application with --app): name or org/name; remote: default you."
    ),
    name: str = typer.Option(..., help="Key name, unique per owner."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="Scope like memory:read."),
    app: bool = typer.Option(False, "--app", help="Owner is a service application."),
    expires_in: str | None = typer.Option(None, help="Lifetime like 30d, 12h."),
    rpm: int | None = typer.Option(None, help="Per-key requests per minute (overrides plan)."),
    units_per_day: int | None = typer.Option(None, help="Per-key daily quota."),
    units_per_month: int | None = typer.Option(None, help="Per-key monthly quota."),
    tokens_per_day: int | None = typer.Option(None, help="Per-key daily model-token quota."),
    tokens_per_month: int | None = typer.Option(None, help="Per-key monthly token quota."),
    server: str | None = ServerOpt,
    remote: bool = RemoteOpt,
    token: str | None = TokenOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    limits = None
    if rpm or units_per_day or units_per_month or tokens_per_day or tokens_per_month:
        limits = Limits(
            requests_per_minute=rpm,
            units_per_day=units_per_day,
            units_per_month=units_per_month,
            tokens_per_day=tokens_per_day,
            tokens_per_month=tokens_per_month,
        )
    lifetime = parse_duration(expires_in) if expires_in else None
    kind = PrincipalKind.APPLICATION if app else PrincipalKind.USER

    api = _remote(ctx, server, remote, token)
    if api is not None:
        if owner and "/" not in owner and not org:
            raise fail("name the owner as org/name, or give --org")
        extra: dict[str, Any] = {"expires_in_seconds": lifetime}
        if owner:
            extra |= {"owner": _owner(org or "", owner), "owner_kind": kind.value}
        if limits is not None:
            extra["limits"] = limits.model_dump(mode="json", exclude_none=True)
        with api as keys:
            minted = keys.create_key(name, scope, **{k: v for k, v in extra.items() if v})
        _print_minted(minted["key"], minted["record"], json_out)
        return

    from iam_sidecar.state import build_state, close_state

    organization = _local_org(org)
    if not owner:
        raise fail("--owner is required on the sidecar's host")
    expires_at = time.time() + lifetime if lifetime else None

    async def go(settings: SidecarSettings) -> tuple[str, dict[str, Any]]:
        state = await build_state(settings)
        try:
            plaintext, record = await state.issuer.issue(
                NewKey(
                    organization=organization,
                    owner=_owner(organization, owner),
                    owner_kind=kind,
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
    _print_minted(plaintext, record, json_out)


@keys_cli.command("list")
def keys_list(
    ctx: typer.Context,
    org: str | None = OrgOpt,
    owner: str | None = typer.Option(None, help="Only this owner's keys."),
    server: str | None = ServerOpt,
    remote: bool = RemoteOpt,
    token: str | None = TokenOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List keys of an organization: prefix, name, scopes, dates, state; never secrets.
    Remote: the keys your credential may see (all of its organization's with keys:manage,
    else your own)."""
    api = _remote(ctx, server, remote, token)
    if api is not None:
        with api as keys:
            records = keys.list_keys()
        _same_org(org, records)
        if owner:
            records = [
                r for r in records if r["owner"] in (owner, _owner(r["organization"], owner))
            ]
        title = f"API keys of {records[0]['organization']}" if records else "API keys"
        _print_keys(title, records, json_out)
        return
    organization = _local_org(org)
    found = run_with_key_store(
        lambda s: s.list(organization, owner=_owner(organization, owner) if owner else None)
    )
    _print_keys(f"API keys of {organization}", [r.public() for r in found], json_out)


@keys_cli.command("show")
def keys_show(
    ctx: typer.Context,
    key_id: str = typer.Argument(...),
    org: str | None = OrgOpt,
    server: str | None = ServerOpt,
    remote: bool = RemoteOpt,
    token: str | None = TokenOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show one key of an organization."""
    kid = key_id.removeprefix("hk-")
    api = _remote(ctx, server, remote, token)
    if api is not None:
        with api as keys:
            record = keys.show_key(kid)
        _same_org(org, [record])
    else:
        organization = _local_org(org)
        record = run_with_key_store(lambda s: s.show(organization, kid)).public()
    if json_out:
        emit_json(record)
    else:
        emit_table(f"API key {record['prefix']}", _KEY_COLUMNS, _key_rows([record]))


@keys_cli.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key_id: str = typer.Argument(...),
    org: str | None = OrgOpt,
    grace: str = typer.Option("1h", help="How long the old secret stays valid."),
    server: str | None = ServerOpt,
    remote: bool = RemoteOpt,
    token: str | None = TokenOpt,
    json_out: bool = JsonOpt,
) -> None:
    """New secret for a key; the old one keeps working for the grace period."""
    kid = key_id.removeprefix("hk-")
    api = _remote(ctx, server, remote, token)
    if api is not None:
        with api as keys:
            rotated = keys.rotate_key(kid, parse_duration(grace))
        _print_rotated(rotated["key"], rotated["record"], json_out)
        return
    organization = _local_org(org)

    async def go(store: Any) -> tuple[str, dict[str, Any]]:
        plaintext = await store.rotate(
            organization, kid, parse_duration(grace), actor="cli", source="cli"
        )
        return plaintext, (await store.show(organization, kid)).public()

    plaintext, record = run_with_key_store(go)
    _print_rotated(plaintext, record, json_out)


@keys_cli.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(...),
    org: str | None = OrgOpt,
    server: str | None = ServerOpt,
    remote: bool = RemoteOpt,
    token: str | None = TokenOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Revoke a key at once (gateways drop it within their verify cache TTL)."""
    kid = key_id.removeprefix("hk-")
    api = _remote(ctx, server, remote, token)
    if api is not None:
        with api as keys:
            record = keys.revoke_key(kid)
    else:
        organization = _local_org(org)
        found = run_with_key_store(lambda s: s.revoke(organization, kid, actor="cli", source="cli"))
        record = found.public()
    _print_revoked(record, json_out)

"""What the CLI command groups share: options, durations, output as tables (people) or
JSON (scripts), typed errors as exit codes, and the key store opened for one command."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from iam_sidecar.casdoor.errors import CasdoorError
from iam_sidecar.errors import SidecarError
from iam_sidecar.settings import SidecarSettings

if TYPE_CHECKING:
    from iam_sidecar.keys.store import KeyStore

T = TypeVar("T")

JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
OrgOpt = typer.Option(..., "--org", "-o", help="Organization (tenant).")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30d, 12h, 15m or 90s")
    return float(match.group(1)) * _UNIT[match.group(2)]


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    Console(width=200).print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run_async(make: Callable[[SidecarSettings], Awaitable[T]]) -> T:
    """Run one async CLI action with settings from env/config; typed errors exit 1."""
    try:
        return asyncio.run(make(SidecarSettings()))
    except SidecarError as exc:
        raise fail(f"{exc.code}: {exc.message}") from None
    except CasdoorError as exc:
        raise fail(f"casdoor_error: {exc}") from None


@asynccontextmanager
async def open_key_store(settings: SidecarSettings) -> AsyncIterator[KeyStore]:
    """The configured key store (SQLite or PostgreSQL), closed (and flushed) when the
    block ends."""
    from iam_sidecar.keys.store import KeyStore  # the CLI imports a driver only when used

    store = await KeyStore.open(
        settings.store_target,
        settings.hash_secret_bytes,
        max_keys_per_owner=settings.max_keys_per_owner,
        migrate_dsn=settings.store_migrate_dsn,
    )
    try:
        yield store
    finally:
        await store.close()


def run_with_key_store(action: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Run one async action on the configured key store (see :func:`run_async`)."""

    async def go(settings: SidecarSettings) -> T:
        async with open_key_store(settings) as store:
            return await action(store)

    return run_async(go)

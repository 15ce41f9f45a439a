"""``hanzo login|logout`` and ``hanzo memory store|search|get|list|update|delete|export|import``.

Against the local stack ``hanzo login`` needs no flags: the Casdoor URL, the shared CLI
application and the gateway come from ``<state>/stack.json``. Against a remote stack,
``--server`` is its gateway URL. Output is a table by default and JSON with ``--json``;
no command ends in a traceback when the server is down or has moved.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hanzo_client.api import HanzoClient, ndjson
from hanzo_client.credentials import Credentials
from hanzo_client.errors import DeviceLoginOff, HanzoAPIError, HanzoConnectionError, HanzoError
from hanzo_client.local_stack import read_local_stack, signin_url, stack_file
from hanzo_client.login import PkceLogin, device_login, shared_client_id
from hanzo_contract.signin import DEVICE_LOGIN_OFF_REASON, DEVICE_LOGIN_SETTING, org_cli_application

login_cli = typer.Typer()
memory_cli = typer.Typer(
    help="Store, search, list and move memories through the gateway.", no_args_is_help=True
)

mcp_cli = typer.Typer()

DEFAULT_SCOPES = ["memory:read", "memory:write", "memory:delete"]
#: lines per import request (the service's batch limit applies inside one request)
IMPORT_CHUNK = 500

JsonOut = typer.Option(False, "--json", help="Print JSON instead of a table")
StateDir = typer.Option(
    None, "--state-dir", envvar="HANZO_STATE_DIR", help="The local stack's state dir"
)

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(message, markup=False, highlight=False)
    return typer.Exit(1)


def _describe(exc: HanzoError) -> str:
    if isinstance(exc, HanzoAPIError) and exc.details:
        return f"{exc}\ndetails: {json.dumps(exc.details, default=str)}"
    return str(exc)


# -- login / logout ----------------------------------------------------------------------


def _mint_device_key(gateway_url: str, access_token: str, scopes: list[str]) -> dict[str, Any]:
    # key names are unique per owner, revoked ones included: each sign-in gets its own
    name = f"device-{socket.gethostname()[:80]}-{secrets.token_hex(3)}"
    with HanzoClient(gateway_url, access_token) as client:
        return client.create_key(name, scopes)


def _where(
    server: str | None,
    state_dir: Path | None,
    casdoor_url: str | None,
    client_id: str | None,
    organization: str | None,
    gateway_url: str | None,
) -> tuple[str, str, str, str, str | None]:
    """``(casdoor, client id, org, gateway, local state dir)``: flags first, then the local
    stack's ``stack.json`` (unless ``--server`` names a remote one)."""
    local = None if server else read_local_stack(state_dir)
    gateway = server or gateway_url or (local.gateway_url if local else None)
    casdoor = casdoor_url or (signin_url(local) if local else None)
    client = client_id or (local.cli_client_id if local else None)
    org = organization or (local.demo_organization if local else None)
    missing = [
        flag
        for flag, value in (
            ("--casdoor-url", casdoor),
            ("--client-id", client),
            ("--org", org),
            ("--server", gateway),
        )
        if not value
    ]
    if missing:
        if server:
            where = f"the remote server {server}"
        elif local:
            where = f"the local stack ({stack_file(state_dir)}) names no demo organization"
        else:
            where = f"no local stack at {stack_file(state_dir)} (run `hanzo up`)"
        raise _fail(f"login needs {', '.join(missing)}: {where}")
    assert casdoor and client and org and gateway
    # the credentials follow the local stack only if that is where they point
    state = local.state_dir if local and local.gateway_url == gateway else None
    return casdoor, client, org, gateway, state


@login_cli.command("login")
def login(
    server: str | None = typer.Option(
        None, "--server", help="A remote stack's gateway URL (default: the local stack)"
    ),
    organization: str | None = typer.Option(
        None, "--org", envvar="HANZO_ORG", help="Your organization (default: the stack's demo)"
    ),
    state_dir: Path | None = StateDir,
    casdoor_url: str | None = typer.Option(None, envvar="HANZO_CASDOOR_URL", hidden=True),
    client_id: str | None = typer.Option(None, envvar="HANZO_CLI_CLIENT_ID", hidden=True),
    gateway_url: str | None = typer.Option(None, envvar="HANZO_GATEWAY_URL", hidden=True),
    scope: list[str] = typer.Option(DEFAULT_SCOPES, "--scope", help="Scopes for this device's key"),
    device: bool = typer.Option(False, "--device", help="Use the device-code grant (no browser)"),
    timeout: float = typer.Option(300.0, help="Seconds to wait for the sign-in"),
) -> None:
    """Sign in at Casdoor (PKCE or device code) and keep an API key for this device."""
    casdoor, client, org, gateway, state = _where(
        server, state_dir, casdoor_url, client_id, organization, gateway_url
    )
    try:
        if device:

            def show(start: dict[str, Any]) -> None:
                typer.echo(f"Open {start.get('verification_uri')} and enter {start['user_code']}")
                typer.echo(f"(sign in there as a user of the organization {org})")

            # the tenant's own CLI application: its device page signs users in to ``org``
            try:
                tokens = device_login(casdoor, org_cli_application(org), show, timeout=timeout)
            except DeviceLoginOff as exc:
                raise _fail(
                    f"login failed: {exc}. Device sign-in is not on for the organization {org} "
                    f"(or it does not exist): its tenant file entry needs "
                    f"`{DEVICE_LOGIN_SETTING}: true`, {DEVICE_LOGIN_OFF_REASON}. "
                    "Sign in with `hanzo login` (browser) instead."
                ) from None
        else:
            flow = PkceLogin(casdoor, shared_client_id(client, org))

            def open_browser(url: str) -> None:
                typer.echo(f"Opening your browser to sign in; if it does not open, visit:\n{url}")
                webbrowser.open(url)

            tokens = flow.run(open_browser, timeout=timeout)
        minted = _mint_device_key(gateway, tokens["access_token"], scope)
    except HanzoError as exc:
        raise _fail(f"login failed: {_describe(exc)}") from None
    record = minted["record"]
    owner = record.get("owner", "")
    path = Credentials(
        gateway_url=gateway,
        casdoor_url=casdoor,
        organization=record.get("organization", owner.split("/")[0]),
        subject=owner,
        key_id=record["key_id"],
        key=minted["key"],
        state_dir=state,
    ).save()
    typer.echo(
        f"signed in as {owner}; API key {record.get('prefix', record['key_id'])} "
        f"saved to {path} (0600)"
    )


@login_cli.command("logout")
def logout() -> None:
    """Revoke this device's key when the server answers, and always forget it here."""
    path = Credentials.path()
    creds = Credentials.load()
    if creds is None:
        if Credentials.forget():
            typer.echo(f"removed unreadable credentials at {path}; nothing was revoked")
        else:
            typer.echo("not signed in")
        return
    creds, moved = creds.follow()
    if moved:
        typer.echo(moved)
    try:
        with HanzoClient(creds.gateway_url, creds.key.get_secret_value(), timeout=5) as client:
            client.revoke_key(creds.key_id)
        outcome = f"the device key {creds.key_id} is revoked"
    except HanzoConnectionError:
        outcome = (
            f"{creds.gateway_url} did not answer, so the key {creds.key_id} is NOT revoked "
            f"(revoke it later with `hanzo keys revoke {creds.key_id}` or in the admin UI)"
        )
    except HanzoAPIError as exc:
        if exc.status in (401, 404):
            outcome = f"the device key {creds.key_id} was already revoked or expired"
        else:
            outcome = f"the key {creds.key_id} could not be revoked ({exc})"
    Credentials.forget()
    typer.echo(f"signed out: {outcome}; removed {path}")


# -- memory ------------------------------------------------------------------------------


def _gateway_and_credential(server: str | None = None, token: str | None = None) -> tuple[str, str]:
    """The gateway and credential to call: ``server``/``token`` as given (``hanzo keys
    --server/--token``), else ``HANZO_GATEWAY_URL``/``HANZO_API_KEY``, else the saved
    credentials. The saved key is sent only to the gateway it was saved for."""
    if server and token:
        return server, token
    key, url = os.environ.get("HANZO_API_KEY"), os.environ.get("HANZO_GATEWAY_URL")
    if not (server or token) and key and url:
        return url, key
    creds = Credentials.load()
    if creds is None:
        raise _fail(
            "not signed in: run `hanzo login`, or give a gateway and a credential "
            "(--server and --token, or HANZO_GATEWAY_URL and HANZO_API_KEY)"
        )
    creds, moved = creds.follow()
    if moved:
        err.print(moved, markup=False, highlight=False)
    if server and server.rstrip("/") != creds.gateway_url.rstrip("/"):
        raise _fail(
            f"the saved credentials are for {creds.gateway_url}, not {server}: "
            "give --token (an access token or key for that server), or `hanzo login --server`"
        )
    return creds.gateway_url, token or creds.key.get_secret_value()


def _client(server: str | None = None, token: str | None = None) -> HanzoClient:
    return HanzoClient(*_gateway_and_credential(server, token))


@mcp_cli.command("mcp")
def mcp_stdio() -> None:
    """Serve the memory tools over MCP on stdio for a local assistant, with the key from
    `hanzo login` (or HANZO_API_KEY and HANZO_GATEWAY_URL)."""
    try:
        from hanzo_client.mcp_stdio import build_stdio_server
    except ImportError:
        typer.echo("`hanzo mcp` needs the mcp extra: pip install 'hanzo-unified[mcp]'", err=True)
        raise typer.Exit(1) from None
    url, key = _gateway_and_credential()
    build_stdio_server(url, key).run("stdio")


@contextlib.contextmanager
def session(server: str | None = None, token: str | None = None) -> Iterator[HanzoClient]:
    """A client for one command; its errors end the command with a message and exit code
    1, never a traceback. Also what ``hanzo keys --server/--remote/--token`` runs on (the
    composition root hands it to the keys commands)."""
    try:
        with _client(server, token) as client:
            yield client
    except HanzoConnectionError as exc:
        raise _fail(
            f"{exc}\n(is the stack up? `hanzo status`; sign in again with `hanzo login`)"
        ) from None
    except HanzoError as exc:
        raise _fail(_describe(exc)) from None


def _run(fn: Callable[[HanzoClient], Any]) -> Any:
    with session() as client:
        return fn(client)


def _emit(data: Any, as_json: bool, table: Callable[[], Table | str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        out.print(table())


def _memory_table(memories: list[dict[str, Any]], scores: list[float] | None = None) -> Table:
    table = Table("id", "content", "namespace", "tags", "scope", "updated")
    if scores is not None:
        table.add_column("score")
    for i, m in enumerate(memories):
        row = [
            m["id"],
            m["content"] if len(m["content"]) <= 60 else m["content"][:59] + "…",
            m.get("namespace", ""),
            ",".join(m.get("tags", [])),
            m.get("scope", ""),
            str(m.get("updated_at", ""))[:19],
        ]
        if scores is not None:
            row.append(f"{scores[i]:.4f}")
        table.add_row(*row)
    return table


@memory_cli.command("store")
def memory_store(
    content: str,
    tag: list[str] = typer.Option([], "--tag"),
    namespace: str = "default",
    as_json: bool = JsonOut,
) -> None:
    """Store one memory; prints its id."""
    memory_id = _run(lambda c: c.store(content, tags=tag, namespace=namespace))
    _emit({"id": memory_id}, as_json, lambda: f"stored {memory_id}")


@memory_cli.command("search")
def memory_search(
    query: str,
    mode: str = "hybrid",
    top_k: int = 5,
    tag: list[str] = typer.Option([], "--tag", help="Only memories with this tag"),
    namespace: str | None = None,
    as_json: bool = JsonOut,
) -> None:
    """Search your memories (vector, keyword or hybrid)."""
    hits = _run(lambda c: c.search(query, mode=mode, top_k=top_k, tag=tag, namespace=namespace))
    _emit(
        hits,
        as_json,
        lambda: _memory_table([h["memory"] for h in hits], [h["score"] for h in hits]),
    )


@memory_cli.command("get")
def memory_get(memory_id: str, as_json: bool = JsonOut) -> None:
    """One memory by id."""
    memory = _run(lambda c: c.get(memory_id))
    _emit(memory, as_json, lambda: _memory_table([memory]))


@memory_cli.command("list")
def memory_list(
    limit: int = typer.Option(50, min=1, max=500, help="Memories per page"),
    cursor: str | None = typer.Option(None, help="next_cursor of the previous page"),
    every: bool = typer.Option(False, "--all", help="Every page, not just one"),
    tag: list[str] = typer.Option([], "--tag"),
    namespace: str | None = None,
    as_json: bool = JsonOut,
) -> None:
    """List your memories, newest first, one page (or ``--all``)."""
    options: dict[str, Any] = {"limit": limit, "tag": tag, "namespace": namespace}
    if every:
        memories = _run(lambda c: list(c.iter_memories(**options)))
        data: dict[str, Any] = {"memories": memories, "next_cursor": None}
    else:
        data = _run(lambda c: c.list(cursor=cursor, **options).model_dump())
    nxt = data["next_cursor"]

    def table() -> Table:
        t = _memory_table(data["memories"])
        if nxt:
            t.caption = f"more: --cursor {nxt}"
        return t

    _emit(data, as_json, table)


@memory_cli.command("update")
def memory_update(
    memory_id: str,
    content: str | None = typer.Option(None, help="New content (re-embedded)"),
    tag: list[str] | None = typer.Option(None, "--tag", help="Replace the tags"),
    importance: float | None = typer.Option(None, min=0.0, max=1.0),
    metadata: str | None = typer.Option(None, help="Replace the metadata (a JSON object)"),
    as_json: bool = JsonOut,
) -> None:
    """Change one memory's content, tags, importance or metadata."""
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    changes = {"content": content, "tags": tag or None, "importance": importance, "metadata": meta}
    if all(v is None for v in changes.values()):
        raise typer.BadParameter(
            "nothing to change: give --content, --tag, --importance or --metadata"
        )
    memory = _run(lambda c: c.update(memory_id, **changes))
    _emit(memory, as_json, lambda: _memory_table([memory]))


@memory_cli.command("delete")
def memory_delete(memory_id: str, as_json: bool = JsonOut) -> None:
    """Delete one memory."""
    _run(lambda c: c.delete(memory_id))
    _emit({"deleted": memory_id}, as_json, lambda: f"deleted {memory_id}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


#: a listed memory's fields that an export line (and so the import) takes
_EXPORT_FIELDS = (
    "id", "content", "namespace", "scope", "metadata", "tags", "importance",
    "expires_at", "created_at", "updated_at", "sensitive",
)  # fmt: skip


@memory_cli.command("export")
def memory_export(
    file: Path = typer.Argument(..., help="NDJSON file to write ('-' for stdout)"),
    as_json: bool = JsonOut,
) -> None:
    """Every memory you can read, one JSON line each (what ``import`` takes back)."""

    def lines(client: HanzoClient) -> Iterator[dict[str, Any]]:
        with _progress() as bar:
            task = bar.add_task("exporting", total=None)
            for memory in client.iter_memories(limit=500):
                bar.advance(task)
                yield {k: memory[k] for k in _EXPORT_FIELDS if memory.get(k) is not None}

    rows = _run(lambda c: list(lines(c)))
    body = ndjson(rows)
    if str(file) == "-":
        typer.echo(body.decode(), nl=False)
        return
    file.write_bytes(body)
    _emit(
        {"exported": len(rows), "file": str(file)},
        as_json,
        lambda: f"exported {len(rows)} memories to {file}",
    )


@memory_cli.command("import")
def memory_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="NDJSON from export"),
    as_json: bool = JsonOut,
) -> None:
    """Store every line of an export; unchanged memories count as duplicates."""
    lines = [ln for ln in file.read_bytes().splitlines() if ln.strip()]
    totals = {"created": 0, "updated": 0, "duplicate": 0, "expired": 0}

    def send(client: HanzoClient) -> None:
        with _progress() as bar:
            task = bar.add_task("importing", total=len(lines))
            for start in range(0, len(lines), IMPORT_CHUNK):
                chunk = lines[start : start + IMPORT_CHUNK]
                counts = client.import_(b"\n".join(chunk) + b"\n")
                for k in totals:
                    totals[k] += int(counts.get(k, 0))
                bar.advance(task, len(chunk))

    _run(send)

    def table() -> Table:
        t = Table(*totals.keys(), title=f"imported {file}")
        t.add_row(*(str(v) for v in totals.values()))
        return t

    _emit(totals, as_json, table)

"""``hanzo login|logout`` and ``hanzo memory store|search|get|delete``."""

from __future__ import annotations

import json
import os
import socket
import webbrowser
from typing import Any

import httpx
import typer

from hanzo_client.api import HanzoAPIError, HanzoClient
from hanzo_client.credentials import Credentials
from hanzo_client.login import LoginError, PkceLogin, device_login, shared_client_id

login_cli = typer.Typer()
memory_cli = typer.Typer(
    help="Store and search memories through the gateway.", no_args_is_help=True
)

mcp_cli = typer.Typer()

DEFAULT_SCOPES = ["memory:read", "memory:write", "memory:delete"]


def _mint_device_key(gateway_url: str, access_token: str, scopes: list[str]) -> dict[str, Any]:
    name = f"device-{socket.gethostname()}"[:100]
    with HanzoClient(gateway_url, access_token) as client:
        return client.create_key(name, scopes)


@login_cli.command("login")
def login(
    casdoor_url: str = typer.Option(..., envvar="HANZO_CASDOOR_URL", help="Casdoor base URL"),
    client_id: str = typer.Option(
        ..., envvar="HANZO_CLI_CLIENT_ID", help="Client id of the shared hanzo-cli application"
    ),
    organization: str = typer.Option(..., "--org", envvar="HANZO_ORG", help="Your organization"),
    gateway_url: str = typer.Option(..., envvar="HANZO_GATEWAY_URL", help="Gateway base URL"),
    scope: list[str] = typer.Option(DEFAULT_SCOPES, "--scope", help="Scopes for this device's key"),
    device: bool = typer.Option(False, "--device", help="Use the device-code grant (no browser)"),
    timeout: float = typer.Option(300.0, help="Seconds to wait for the sign-in"),
) -> None:
    """Sign in at Casdoor (PKCE or device code) and keep an API key for this device."""
    try:
        if device:

            def show(start: dict[str, Any]) -> None:
                typer.echo(f"Open {start.get('verification_uri')} and enter {start['user_code']}")

            tokens = device_login(
                casdoor_url, shared_client_id(client_id, organization), show, timeout=timeout
            )
        else:
            flow = PkceLogin(casdoor_url, shared_client_id(client_id, organization))

            def open_browser(url: str) -> None:
                typer.echo(f"Opening your browser to sign in; if it does not open, visit:\n{url}")
                webbrowser.open(url)

            tokens = flow.run(open_browser, timeout=timeout)
        minted = _mint_device_key(gateway_url, tokens["access_token"], scope)
    except (LoginError, HanzoAPIError, httpx.HTTPError) as exc:
        typer.echo(f"login failed: {exc}", err=True)
        raise typer.Exit(1) from None
    record = minted["record"]
    owner = record.get("owner", "")
    path = Credentials(
        gateway_url=gateway_url,
        casdoor_url=casdoor_url,
        organization=record.get("organization", owner.split("/")[0]),
        subject=owner,
        key_id=record["key_id"],
        key=minted["key"],
    ).save()
    typer.echo(
        f"signed in as {owner}; API key {record.get('prefix', record['key_id'])} "
        f"saved to {path} (0600)"
    )


@login_cli.command("logout")
def logout() -> None:
    """Revoke this device's key and forget it."""
    creds = Credentials.load()
    if creds is None:
        typer.echo("not signed in")
        return
    try:
        with HanzoClient(creds.gateway_url, creds.key.get_secret_value()) as client:
            client.revoke_key(creds.key_id)
    except HanzoAPIError as exc:
        if exc.status not in (401, 404):  # already revoked or expired: still forget it
            typer.echo(f"could not revoke the key: {exc}", err=True)
            raise typer.Exit(1) from None
    Credentials.forget()
    typer.echo("signed out; the device key is revoked")


def _key_and_gateway() -> tuple[str, str]:
    key, url = os.environ.get("HANZO_API_KEY"), os.environ.get("HANZO_GATEWAY_URL")
    if not (key and url):
        creds = Credentials.load()
        if creds is None:
            typer.echo(
                "not signed in: run `hanzo login` or set HANZO_API_KEY and HANZO_GATEWAY_URL",
                err=True,
            )
            raise typer.Exit(1)
        key, url = creds.key.get_secret_value(), creds.gateway_url
    return key, url


def _client() -> HanzoClient:
    key, url = _key_and_gateway()
    return HanzoClient(url, key)


@mcp_cli.command("mcp")
def mcp_stdio() -> None:
    """Serve the memory tools over MCP on stdio for a local assistant, with the key from
    `hanzo login` (or HANZO_API_KEY and HANZO_GATEWAY_URL)."""
    try:
        from hanzo_client.mcp_stdio import build_stdio_server
    except ImportError:
        typer.echo("`hanzo mcp` needs the mcp extra: pip install 'hanzo-unified[mcp]'", err=True)
        raise typer.Exit(1) from None
    key, url = _key_and_gateway()
    build_stdio_server(url, key).run("stdio")


def _run(fn: Any) -> None:
    try:
        with _client() as client:
            typer.echo(json.dumps(fn(client), indent=2, default=str))
    except HanzoAPIError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@memory_cli.command("store")
def memory_store(
    content: str, tag: list[str] = typer.Option([], "--tag"), namespace: str = "default"
) -> None:
    """Store one memory; prints its id."""
    _run(lambda c: {"id": c.store(content, tags=tag, namespace=namespace)})


@memory_cli.command("search")
def memory_search(query: str, mode: str = "hybrid", top_k: int = 5) -> None:
    """Search your memories (vector, keyword or hybrid)."""
    _run(lambda c: c.search(query, mode=mode, top_k=top_k))


@memory_cli.command("get")
def memory_get(memory_id: str) -> None:
    _run(lambda c: c.get(memory_id))


@memory_cli.command("delete")
def memory_delete(memory_id: str) -> None:
    _run(lambda c: c.delete(memory_id) or {"deleted": memory_id})

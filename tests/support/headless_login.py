"""A headless sign-in to the CLI's Casdoor application: the user's browser played by the
POST Casdoor's own login page sends, then the redirect to the CLI's loopback port. Used by
the end-to-end tests and by ``scripts/fault_suite.py``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from hanzo_client.login import PkceLogin


def headless_browser(casdoor_url: str, org: str, user: str, password: str) -> Callable[[str], None]:
    """Plays the user's browser on Casdoor's sign-in page: posts the credentials the way
    Casdoor's own login page does, then follows the redirect to the CLI's loopback port."""

    def open_browser(authorize_url: str) -> None:
        q = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
        application = "hanzo-cli-org-" + org  # the shared CLI app, seen from this tenant
        reply = httpx.post(
            f"{casdoor_url}/api/login",
            params={
                "clientId": q["client_id"],
                "responseType": "code",
                "redirectUri": q["redirect_uri"],
                "scope": q["scope"],
                "state": q["state"],
                "code_challenge": q["code_challenge"],
                "code_challenge_method": "S256",
            },
            json={
                "application": application,
                "organization": org,
                "username": user,
                "password": password,
                "type": "code",
            },
        ).json()
        if reply.get("status") != "ok":
            raise RuntimeError(f"sign-in of {org}/{user} refused: {reply.get('msg')}")
        redirect = {"code": reply["data"], "state": q["state"]}
        threading.Timer(
            0.1, lambda: httpx.get(q["redirect_uri"], params=redirect, timeout=5)
        ).start()

    return open_browser


def headless_sign_in(
    casdoor_url: str, cli_client_id: str, org: str, user: str, password: str, timeout: float = 20
) -> dict[str, Any]:
    """The token set (``access_token``: a JWT) of ``org/user``: PKCE against Casdoor."""
    flow = PkceLogin(casdoor_url, f"{cli_client_id}-org-{org}")
    return flow.run(headless_browser(casdoor_url, org, user, password), timeout=timeout)

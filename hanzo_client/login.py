"""Sign in at Casdoor the way the CLI and the editor extensions do.

Authorization code + PKCE through a loopback redirect (RFC 8252): a one-shot HTTP server on
``127.0.0.1:<free port>/callback`` receives the code; the verifier never leaves this
process, so the public CLI application needs no client secret. Without a browser, the
device-code grant (RFC 8628) prints a code to enter elsewhere and polls.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from hanzo_client.errors import DeviceLoginOff, LoginError
from hanzo_contract.signin import DEVICE_CODE_GRANT

__all__ = ["LoginError", "PkceLogin", "device_login", "pkce_pair", "shared_client_id"]


def shared_client_id(client_id: str, organization: str) -> str:
    """The hanzo-cli app is a Casdoor *shared* application: one client id for every tenant,
    addressed as ``<client id>-org-<organization>`` so users sign in to their own org."""
    return f"{client_id}-org-{organization}"


def pkce_pair() -> tuple[str, str]:
    """``(verifier, S256 challenge)``."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _CallbackServer(HTTPServer):
    result: dict[str, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/callback":
            self.send_error(404)
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.result = query  # type: ignore[attr-defined]
        body = b"Signed in to Hanzo. You can close this tab."
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the code must not be logged
        return


class PkceLogin:
    """One authorization-code + PKCE sign-in for ``client_id`` at ``casdoor_url``."""

    def __init__(self, casdoor_url: str, client_id: str, scope: str = "openid profile") -> None:
        self.casdoor_url = casdoor_url.rstrip("/")
        self.client_id = client_id
        self.scope = scope
        self.verifier, self.challenge = pkce_pair()
        self.state = secrets.token_urlsafe(16)
        self._server = _CallbackServer(("127.0.0.1", 0), _Handler)
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_port}/callback"

    @property
    def authorize_url(self) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "response_type": "code",
                "redirect_uri": self.redirect_uri,
                "scope": self.scope,
                "state": self.state,
                "code_challenge": self.challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.casdoor_url}/login/oauth/authorize?{query}"

    def wait_for_code(self, timeout: float = 300.0) -> str:
        """Serve the loopback redirect until it arrives (or time out); check ``state``."""
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        try:
            while self._server.result is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            self._server.shutdown()
            self._server.server_close()
        result = self._server.result
        if result is None:
            raise LoginError(f"no sign-in within {timeout:.0f}s")
        if result.get("state") != self.state:
            raise LoginError("state mismatch on the redirect (possible CSRF); try again")
        if "code" not in result:
            raise LoginError(f"Casdoor returned no code: {result.get('error', 'unknown')}")
        return result["code"]

    def exchange(self, code: str) -> dict[str, Any]:
        """Trade the code and the verifier for tokens (no client secret: PKCE)."""
        response = httpx.post(
            f"{self.casdoor_url}/api/login/oauth/access_token",
            data={
                "grant_type": "authorization_code",
                "client_id": self.client_id,
                "code": code,
                "code_verifier": self.verifier,
                "redirect_uri": self.redirect_uri,
            },
            timeout=15,
        )
        body = response.json()
        if "access_token" not in body or body.get("error"):
            raise LoginError(f"code exchange failed: {body.get('error_description') or body}")
        return body

    def run(self, open_browser: Callable[[str], object], timeout: float = 300.0) -> dict[str, Any]:
        open_browser(self.authorize_url)
        return self.exchange(self.wait_for_code(timeout))


def device_login(
    casdoor_url: str,
    client_id: str,
    show: Callable[[dict[str, Any]], None],
    scope: str = "openid profile",
    timeout: float = 300.0,
) -> dict[str, Any]:
    """RFC 8628: ask for a device code, show the user code, poll until approved."""
    base = casdoor_url.rstrip("/")
    start = httpx.post(
        f"{base}/api/device-auth", data={"client_id": client_id, "scope": scope}, timeout=15
    ).json()
    if "device_code" not in start:
        # Casdoor refuses a device code only for a client id it does not know, which is
        # what a tenant's CLI application answers to while its device sign-in is off
        reason = start.get("error_description") or start.get("error") or start
        raise DeviceLoginOff(f"Casdoor gives no device code to {client_id}: {reason}")
    show(start)
    interval = float(start.get("interval", 5))
    deadline = time.monotonic() + min(timeout, float(start.get("expires_in", timeout)))
    while time.monotonic() < deadline:
        time.sleep(interval)
        body = httpx.post(
            f"{base}/api/login/oauth/access_token",
            data={
                "grant_type": DEVICE_CODE_GRANT,
                "client_id": client_id,
                "device_code": start["device_code"],
            },
            timeout=15,
        ).json()
        if "access_token" in body and not body.get("error"):
            return body
        if body.get("error") == "slow_down":
            interval += 5
        elif body.get("error") == "unsupported_grant_type":
            raise DeviceLoginOff(f"{client_id} has no device grant in Casdoor")
        elif body.get("error") not in ("authorization_pending", None):
            raise LoginError(f"device sign-in failed: {body.get('error_description') or body}")
    raise LoginError("device code expired before it was approved")

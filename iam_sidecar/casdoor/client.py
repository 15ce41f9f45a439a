"""Async client for the parts of Casdoor's REST API the sidecar needs.

Why not the ``casdoor`` SDK's own HTTP calls: its async client has no timeouts, shares
one aiohttp session in a way that races under concurrency, and returns Casdoor's
HTTP-200 ``{"status": "error"}`` envelopes as if they were data. This client uses httpx
with explicit timeouts, retries only transient failures (connect errors, timeouts, 5xx)
with tenacity, and turns error envelopes into typed exceptions. Authentication is HTTP
Basic with the application's client id/secret, so secrets never travel in URLs (and so
never in access logs).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from iam_sidecar.casdoor.errors import (
    CasdoorAuthError,
    CasdoorError,
    CasdoorNotFound,
    CasdoorUnavailable,
)

log = logging.getLogger(__name__)

ObjectKind = Literal["organization", "role", "permission", "user", "application", "cert", "group"]
_PLURAL: dict[str, str] = {
    "organization": "organizations",
    "role": "roles",
    "permission": "permissions",
    "user": "users",
    "application": "applications",
    "cert": "certs",
    "group": "groups",
}


class _MaybeApplied(Exception):
    """A write that reached Casdoor and failed after: never sent again."""


class _Transient(Exception):
    """Internal marker: worth another try."""


def _is_not_found(message: str) -> bool:
    text = message.lower()
    return "does not exist" in text or "not found" in text or "doesn't exist" in text


def _is_auth_error(message: str) -> bool:
    text = message.lower()
    return (
        "unauthorized" in text
        or "incorrect client secret" in text
        or ("application not found for client id" in text)
    )


class CasdoorClient:
    """One Casdoor server, reached with one application's client credentials."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._retries = max(1, retries)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(client_id, client_secret),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport
    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, sent again after a failure only when that is safe: a read, or a write
        that never left (no connection). A write whose answer was lost or was a 5xx may
        have been applied (an ``add-`` sent again answers "already exists")."""
        action = path.rsplit("/", 1)[-1]
        read = method.upper() in ("GET", "HEAD")
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._retries),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    try:
                        response = await self._http.request(method, path, **kwargs)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        raise _Transient(f"{type(exc).__name__}: {exc}") from None
                    except (httpx.TransportError, httpx.TimeoutException) as exc:
                        failed = f"{type(exc).__name__}: {exc}"
                        raise (_Transient if read else _MaybeApplied)(failed) from None
                    if response.status_code >= 500:
                        failed = f"HTTP {response.status_code}"
                        raise (_Transient if read else _MaybeApplied)(failed)
                    return response
        except _Transient as exc:
            raise CasdoorUnavailable(
                f"{self.base_url} unreachable after {self._retries} attempts ({exc})",
                action=action,
                status_code=503,
            ) from None
        except _MaybeApplied as exc:
            raise CasdoorUnavailable(
                f"{self.base_url} failed a write, not sent again ({exc})",
                action=action,
                status_code=503,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one API call and unwrap Casdoor's ``{status, msg, data}`` envelope."""
        action = path.rsplit("/", 1)[-1]
        response = await self._send(method, path, **kwargs)
        if response.status_code in (401, 403):
            raise CasdoorAuthError(
                response.text[:200], action=action, status_code=response.status_code
            )
        if response.status_code == 404:
            raise CasdoorNotFound(f"no route {path}", action=action, status_code=404)
        try:
            body = response.json()
        except ValueError:
            raise CasdoorError(
                f"non-JSON reply (HTTP {response.status_code})",
                action=action,
                status_code=response.status_code,
            ) from None
        if isinstance(body, dict) and body.get("status") == "error":
            message = str(body.get("msg") or "unknown error")
            if _is_auth_error(message):
                raise CasdoorAuthError(message, action=action)
            if _is_not_found(message):
                raise CasdoorNotFound(message, action=action)
            raise CasdoorError(message, action=action)
        if isinstance(body, dict) and "status" in body:
            return body.get("data")
        return body

    # ------------------------------------------------------------------ objects
    async def get_object(self, kind: ObjectKind, owner: str, name: str) -> dict[str, Any] | None:
        try:
            data = await self.call("GET", f"/api/get-{kind}", params={"id": f"{owner}/{name}"})
        except CasdoorNotFound:
            return None
        return data or None

    async def list_objects(self, kind: ObjectKind, owner: str) -> list[dict[str, Any]]:
        params = {"owner": owner}
        if kind == "application":
            # applications are owned by "admin"; list one organization's with this route
            data = await self.call(
                "GET",
                "/api/get-organization-applications",
                params={"owner": "admin", "organization": owner},
            )
        else:
            data = await self.call("GET", f"/api/get-{_PLURAL[kind]}", params=params)
        return list(data or [])

    async def add_object(self, kind: ObjectKind, obj: dict[str, Any]) -> None:
        result = await self.call("POST", f"/api/add-{kind}", json=obj)
        if result == "Affected" or result is True:
            return
        raise CasdoorError(
            f"{kind} {obj.get('owner')}/{obj.get('name')} not added ({result!r})",
            action=f"add-{kind}",
        )

    async def update_object(
        self, kind: ObjectKind, owner: str, name: str, obj: dict[str, Any]
    ) -> bool:
        """Returns whether Casdoor changed anything (it answers ``Unaffected`` if not)."""
        result = await self.call(
            "POST", f"/api/update-{kind}", params={"id": f"{owner}/{name}"}, json=obj
        )
        return result == "Affected"

    async def delete_object(self, kind: ObjectKind, obj: dict[str, Any]) -> bool:
        result = await self.call("POST", f"/api/delete-{kind}", json=obj)
        return result == "Affected"

    # ------------------------------------------------------------------ conveniences
    async def get_organization(self, name: str) -> dict[str, Any] | None:
        return await self.get_object("organization", "admin", name)

    async def get_user(self, organization: str, name: str) -> dict[str, Any] | None:
        return await self.get_object("user", organization, name)

    async def get_role(self, organization: str, name: str) -> dict[str, Any] | None:
        return await self.get_object("role", organization, name)

    async def health(self) -> bool:
        try:
            response = await self._send("GET", "/api/health")
        except CasdoorUnavailable:
            return False
        return response.status_code == 200

    # ------------------------------------------------------------------ OAuth2
    async def _token(self, form: dict[str, str]) -> dict[str, Any]:
        response = await self._send("POST", "/api/login/oauth/access_token", data=form)
        try:
            body = response.json()
        except ValueError:
            raise CasdoorError("non-JSON token reply", action="access_token") from None
        if "access_token" not in body or body.get("error"):
            message = str(body.get("error_description") or body.get("error") or body)
            raise CasdoorAuthError(message, action="access_token")
        return body

    async def client_credentials_token(self) -> dict[str, Any]:
        """A token for our own application (``sub`` is ``admin/<app>``)."""
        return await self._token(
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
        )

    async def password_token(
        self,
        organization: str,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> dict[str, Any]:
        """Resource-owner password grant: for dev tooling and tests, not for end users."""
        return await self._token(
            {
                "grant_type": "password",
                "client_id": client_id or self.client_id,
                "client_secret": client_secret or self._client_secret,
                "username": username,
                "password": password,
                "organization": organization,
            }
        )

    async def jwks(self) -> dict[str, Any]:
        response = await self._send("GET", "/.well-known/jwks")
        return response.json()

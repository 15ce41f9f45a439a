"""HTTP client for the sidecar's verify, resolve and audit endpoints, over one or more
sidecars.

With several sidecars (``sidecar_urls``) each call goes to the first one that is not
resting: one that refuses the connection, does not connect within the short connect
timeout, times out or answers 5xx is passed over for the next and rests for
``backoff`` seconds (a small circuit breaker on an injected clock), so a dead sidecar costs
one request its timeout, not every request. A 4xx is an answer, never a reason to ask
another: a key one sidecar calls revoked must not be asked about elsewhere until some
sidecar says yes. When every sidecar is resting, the one whose rest ends first is asked
anyway; when none answers the call raises :class:`Unavailable` (the core's 503
``auth_unavailable``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from gateway_plugins import metrics
from gateway_plugins.errors import Rejected, Unavailable
from hanzo_contract.reports import AUDIT_DENIALS_PATH, USAGE_REPORT_PATH
from hanzo_contract.request_id import propagate
from hanzo_contract.verify import (
    RESOLVE_PATH,
    VERIFY_PATH,
    ResolveRequest,
    VerifyRequest,
    VerifyResponse,
)

__all__ = ["KeySource", "PrincipalResolver", "Rejected", "SidecarClient", "Unavailable"]

_T = TypeVar("_T")


class KeySource(Protocol):
    async def verify(self, key: str) -> VerifyResponse: ...


class PrincipalResolver(Protocol):
    async def resolve(self, request: ResolveRequest) -> VerifyResponse: ...


#: how long an idle pooled connection is kept: less than the sidecar's own keep-alive
#: timeout (uvicorn's 5 s), so the client never picks a connection the sidecar is closing.
#: A key's principal is cached for 5 s, so a hot key's next sidecar call came exactly as
#: the sidecar closed the connection the last one left idle, and failed (a 503).
KEEPALIVE_SECONDS = 2.0

#: a kept-alive connection that broke as a request went out on it (the peer closed it at
#: that moment): a read is sent once more, on a new connection
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class _Sidecar:
    """One sidecar: its pooled connections and until when it rests after a failure."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.resting_until = 0.0


class _Failed(Exception):
    """This sidecar could not answer (transport error or 5xx); try the next."""


class SidecarClient:
    """Talks to the sidecars with the shared verify token; one pooled connection set each."""

    def __init__(
        self,
        base_urls: str | Sequence[str],
        verify_token: str,
        timeout: float = 2.0,
        *,
        connect_timeout: float = 0.25,
        backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one sidecar URL is required")
        self._backoff = backoff
        self._clock = clock
        self._sidecars = [
            _Sidecar(
                url.rstrip("/"),
                httpx.AsyncClient(
                    base_url=url.rstrip("/"),
                    headers={"Authorization": f"Bearer {verify_token}"},
                    timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
                    limits=httpx.Limits(
                        max_connections=64,
                        max_keepalive_connections=16,
                        keepalive_expiry=KEEPALIVE_SECONDS,
                    ),
                    event_hooks={"request": [propagate]},
                ),
            )
            for url in urls
        ]
        self._failovers = {
            s.url: metrics.SIDECAR_FAILOVERS.labels(sidecar=s.url) for s in self._sidecars
        }

    async def verify(self, key: str) -> VerifyResponse:
        return await self._principal(VERIFY_PATH, VerifyRequest(key=key).model_dump())

    async def resolve(self, request: ResolveRequest) -> VerifyResponse:
        payload = request.model_dump(mode="json", exclude_none=True)
        return await self._principal(RESOLVE_PATH, payload)

    async def report_denial(self, denial: dict[str, Any]) -> None:
        """One ``DenialReport`` (status, reason, organization, subject, key_id, ...)."""
        await self._report(AUDIT_DENIALS_PATH, denial)

    async def report_usage(self, entries: list[dict[str, Any]]) -> None:
        """Allowed-request counts since the last report (``POST /v1/usage/report``)."""
        await self._report(USAGE_REPORT_PATH, {"entries": entries})

    async def _principal(self, path: str, payload: dict[str, Any]) -> VerifyResponse:
        """A read: safe to ask the next sidecar after any failure of this one."""

        async def ask(sidecar: _Sidecar) -> VerifyResponse:
            try:
                try:
                    response = await sidecar.http.post(path, json=payload)
                except _STALE:  # once more, on a new connection: a read is safe to repeat
                    response = await sidecar.http.post(path, json=payload)
            except httpx.TransportError as exc:
                raise _Failed(f"unreachable: {type(exc).__name__}") from None
            if response.status_code == 200:
                try:
                    return VerifyResponse.model_validate_json(response.content)
                except ValidationError:
                    raise _Failed("answered an unreadable principal") from None
            if response.status_code in (400, 401, 404, 422):
                code, message = _error_of(response)
                raise Rejected(code, message)
            if response.status_code >= 500:
                raise _Failed(f"answered {response.status_code}")
            # any other 4xx (a wrong verify token: 403) is this deployment's answer: the
            # other sidecars share its configuration
            raise Unavailable(f"sidecar answered {response.status_code}")

        return await self._first(ask)

    async def _report(self, path: str, body: dict[str, Any]) -> None:
        """A write: moved to the next sidecar only when it was never sent (no connection)
        or answered 5xx (not applied); one whose answer was lost is not sent again, so a
        usage report is never counted twice. The reporters keep and retry what fails."""

        async def send(sidecar: _Sidecar) -> None:
            try:
                response = await sidecar.http.post(path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise _Failed(f"unreachable: {type(exc).__name__}") from None
            if response.status_code >= 500:
                raise _Failed(f"answered {response.status_code}")
            response.raise_for_status()

        await self._first(send)

    async def _first(self, call: Callable[[_Sidecar], Awaitable[_T]]) -> _T:
        """``call`` on each sidecar that is not resting, in order, until one answers."""
        now = self._clock()
        awake = [s for s in self._sidecars if s.resting_until <= now]
        # every one resting: ask the one whose rest ends first rather than refuse unasked,
        # so a lone sidecar that came back serves at once (a dead one refuses fast)
        why: list[str] = []
        for sidecar in awake or [min(self._sidecars, key=lambda s: s.resting_until)]:
            try:
                return await call(sidecar)
            except _Failed as exc:
                sidecar.resting_until = self._clock() + self._backoff
                self._failovers[sidecar.url].inc()
                why.append(f"{sidecar.url} {exc}")
        raise Unavailable("no sidecar answered: " + "; ".join(why))

    async def ready(self) -> str:
        """``ok`` when some sidecar answers its readiness probe, else why none does."""
        why: list[str] = []
        for sidecar in self._sidecars:
            try:
                response = await sidecar.http.get("/readyz")
            except httpx.HTTPError as exc:
                why.append(f"unreachable: {type(exc).__name__}")
                continue
            if response.status_code == 200:
                return "ok"
            why.append(f"answered {response.status_code}")
        return "; ".join(why)

    async def aclose(self) -> None:
        for sidecar in self._sidecars:
            await sidecar.http.aclose()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        err = response.json()["error"]
        return str(err["code"]), str(err.get("message", "credential rejected"))
    except (ValueError, KeyError, TypeError):
        return "invalid_credential", "credential rejected"

"""HTTP client for the sidecar's verify, resolve and audit endpoints."""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from pydantic import ValidationError

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


class KeySource(Protocol):
    async def verify(self, key: str) -> VerifyResponse: ...


class PrincipalResolver(Protocol):
    async def resolve(self, request: ResolveRequest) -> VerifyResponse: ...


class SidecarClient:
    """Talks to the sidecar with the shared verify token; one pooled connection set."""

    def __init__(self, base_url: str, verify_token: str, timeout: float = 2.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {verify_token}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            event_hooks={"request": [propagate]},
        )

    async def verify(self, key: str) -> VerifyResponse:
        return await self._post(VERIFY_PATH, VerifyRequest(key=key).model_dump())

    async def resolve(self, request: ResolveRequest) -> VerifyResponse:
        return await self._post(RESOLVE_PATH, request.model_dump(mode="json", exclude_none=True))

    async def report_denial(self, denial: dict[str, Any]) -> None:
        """One ``DenialReport`` (status, reason, organization, subject, key_id, ...)."""
        response = await self._http.post(AUDIT_DENIALS_PATH, json=denial)
        response.raise_for_status()

    async def report_usage(self, entries: list[dict[str, Any]]) -> None:
        """Allowed-request counts since the last report (``POST /v1/usage/report``)."""
        response = await self._http.post(USAGE_REPORT_PATH, json={"entries": entries})
        response.raise_for_status()

    async def _post(self, path: str, payload: dict[str, Any]) -> VerifyResponse:
        try:
            response = await self._http.post(path, json=payload)
        except httpx.HTTPError as exc:
            raise Unavailable(f"sidecar unreachable: {type(exc).__name__}") from None
        if response.status_code == 200:
            try:
                return VerifyResponse.model_validate_json(response.content)
            except ValidationError:
                raise Unavailable("sidecar answered an unreadable principal") from None
        if response.status_code in (400, 401, 404, 422):
            code, message = _error_of(response)
            raise Rejected(code, message)
        raise Unavailable(f"sidecar answered {response.status_code}")

    async def ready(self) -> str:
        """``ok`` when the sidecar answers its readiness probe, else why not."""
        try:
            response = await self._http.get("/readyz")
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok" if response.status_code == 200 else f"answered {response.status_code}"

    async def aclose(self) -> None:
        await self._http.aclose()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        err = response.json()["error"]
        return str(err["code"]), str(err.get("message", "credential rejected"))
    except (ValueError, KeyError, TypeError):
        return "invalid_credential", "credential rejected"

"""Token quotas through the gateway plugin (``hanzo_contract.tokens``): reserve a call's
estimate before its upstream is called, settle it to the reported usage afterwards.

The plugin owns the quota counters (in-process and SQLite-persisted, or Redis), so token
quotas live beside request quotas in one store, and a reservation is checked and held
there atomically: two calls that together exceed a quota cannot both start.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import ValidationError

from hanzo_contract.principal import Principal
from hanzo_contract.tokens import (
    TOKEN_CHARGE_PATH,
    TOKEN_RESERVE_PATH,
    TokenCharge,
    TokenReservation,
    TokenReserved,
)
from inference_gateway.errors import InferenceError

#: every part's readiness path (the plugin's too)
READYZ_PATH = "/readyz"

log = logging.getLogger("inference_gateway")

#: the plugin's headers a refused reservation passes on to the client
_QUOTA_HEADERS = ("retry-after", "ratelimit", "ratelimit-policy", "ratelimit-limit",
                  "ratelimit-remaining", "ratelimit-reset")  # fmt: skip


def capped(principal: Principal) -> bool:
    """Whether any token quota applies (no reservation is needed otherwise)."""
    return any(
        limits.tokens_per_day or limits.tokens_per_month
        for limits in (principal.limits, principal.org_limits)
    )


class TokenCharger:
    def __init__(self, plugin_url: str, token: str, attempts: int = 3) -> None:
        self._attempts = attempts
        self._http = httpx.AsyncClient(
            base_url=plugin_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=5.0,
        )

    async def reserve(self, principal: Principal, model: str, tokens: int) -> str | None:
        """Hold ``tokens`` of the principal's token quotas; the reservation's id (``None``:
        nothing held), or the plugin's refusal as ours: 429 with the quota's reset time,
        503 when the counters (or the plugin) cannot be reached. Nothing is called
        upstream without an answer here: an unmetered call could overrun every quota."""
        if not capped(principal):
            return None
        body = TokenReservation(principal=principal, model=model, tokens=tokens)
        payload = body.model_dump(mode="json")
        for attempt in range(self._attempts):
            try:
                response = await self._http.post(TOKEN_RESERVE_PATH, json=payload)
            except httpx.HTTPError as exc:
                log.warning("token reservation attempt %d failed: %s", attempt + 1,
                            type(exc).__name__)  # fmt: skip
                continue
            if response.status_code == 200:
                try:
                    return TokenReserved.model_validate_json(response.content).reservation
                except ValidationError:
                    log.error("the plugin's token reservation answer is not a reservation")
                    break
            if response.status_code == 429:
                headers = {k: v for k, v in response.headers.items() if k in _QUOTA_HEADERS}
                raise InferenceError(
                    429,
                    "token_quota_exceeded",
                    "this call's token estimate exceeds the token quota left until its reset",
                    {"reserved_tokens": tokens},
                    headers,
                )
            if response.status_code < 500:
                log.error("token reservation refused by the plugin: %d", response.status_code)
                break
        raise InferenceError(503, "quota_unavailable", "token quotas unavailable, retry later")

    async def charge(
        self,
        principal: Principal,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        reservation: str | None = None,
    ) -> bool:
        """Settle once (``reservation``) or charge; a transient failure is retried, a
        lasting one logged (the call has already been served: the caller is not made to
        pay for our outage, and an unsettled reservation expires in the plugin)."""
        body = TokenCharge(
            principal=principal,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            reservation=reservation,
        ).model_dump(mode="json")
        for attempt in range(self._attempts):
            try:
                response = await self._http.post(TOKEN_CHARGE_PATH, json=body)
                if response.status_code == 202:
                    return True
                if response.status_code < 500:
                    break
            except httpx.HTTPError as exc:
                log.warning("token charge attempt %d failed: %s", attempt + 1, type(exc).__name__)
        log.error("token charge for %s not recorded (%s)", principal.organization, model)
        return False

    async def ready(self) -> str:
        """``ok`` when the plugin, which holds the token counters, says it is ready; else
        why not (readiness: no metered call can start without it)."""
        try:
            response = await self._http.get(READYZ_PATH, timeout=2.0)
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok" if response.status_code == 200 else f"not ready: {response.status_code}"

    async def aclose(self) -> None:
        await self._http.aclose()

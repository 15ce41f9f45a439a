"""Report the tokens a call spent to the gateway plugin (``hanzo_contract.tokens``).

The plugin owns the quota counters (in-process and SQLite-persisted, or Redis), so token
quotas live beside request quotas in one store and are checked by the same decision that
admits the next request, before any upstream is called.
"""

from __future__ import annotations

import logging

import httpx

from hanzo_contract.principal import Principal
from hanzo_contract.tokens import TOKEN_CHARGE_PATH, TokenCharge

log = logging.getLogger("inference_gateway")


class TokenCharger:
    def __init__(self, plugin_url: str, token: str, attempts: int = 3) -> None:
        self._attempts = attempts
        self._http = httpx.AsyncClient(
            base_url=plugin_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=5.0,
        )

    async def charge(
        self, principal: Principal, model: str, prompt_tokens: int, completion_tokens: int
    ) -> bool:
        """Charge once; a transient failure is retried, a lasting one logged (the call has
        already been served: the caller is not made to pay for our outage)."""
        body = TokenCharge(
            principal=principal,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
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

    async def aclose(self) -> None:
        await self._http.aclose()

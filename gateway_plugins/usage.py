"""Allowed requests counted per key, user and organization, reported to the sidecar.

The sidecar keeps the usage counters, but gateways cache key answers, so it only learns
of real traffic from us. The hot path is one dict increment; a background task sends the
totals every ``interval`` seconds to ``POST /v1/usage/report``. A failed report keeps its
counts for the next one (up to ``max_entries`` distinct callers, then the excess is
dropped and counted in metrics), so a sidecar outage loses nothing that fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from gateway_plugins import metrics
from gateway_plugins.background import BackgroundTask
from gateway_plugins.errors import Unavailable
from hanzo_contract.principal import Principal
from hanzo_contract.tokens import TokenCharge

log = logging.getLogger(__name__)

Caller = tuple[str, str | None, str | None]
ModelCaller = tuple[str, str | None, str | None, str]
Sender = Callable[[list[dict[str, Any]]], Awaitable[None]]


class UsageReporter:
    def __init__(self, send: Sender, interval: float = 10.0, max_entries: int = 10_000) -> None:
        self._send = send
        self._interval = interval
        self._max = max_entries
        self._counts: Counter[Caller] = Counter()
        #: per (caller, model): [calls, prompt tokens, completion tokens]
        self._models: dict[ModelCaller, list[int]] = {}
        self._reports = BackgroundTask(self._loop)

    def count(self, principal: Principal) -> None:
        self._counts[(principal.organization, principal.subject, principal.key_id)] += 1
        self._reports.start()

    def count_tokens(self, principal: Principal, charge: TokenCharge) -> None:
        slot = (principal.organization, principal.subject, principal.key_id, charge.model)
        totals = self._models.get(slot)
        if totals is None:
            if len(self._models) >= self._max:
                metrics.USAGE_DROPPED.inc()
                return
            totals = self._models[slot] = [0, 0, 0]
        totals[0] += 1
        totals[1] += charge.prompt_tokens
        totals[2] += charge.completion_tokens
        self._reports.start()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Send what was counted; on failure keep it for the next report."""
        if not self._counts and not self._models:
            return
        batch, self._counts = self._counts, Counter()
        models, self._models = self._models, {}
        entries = [
            {"organization": org, "subject": subject, "key_id": key_id, "requests": n}
            for (org, subject, key_id), n in batch.items()
        ]
        entries += [
            {
                "organization": org,
                "subject": subject,
                "key_id": key_id,
                "model": model,
                "requests": calls,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
            }
            for (org, subject, key_id, model), (calls, prompt, completion) in models.items()
        ]
        try:
            await self._send(entries)
        except Unavailable as exc:  # never applied (no sidecar reached, or 5xx): kept
            log.warning(
                "usage report not delivered (%s); kept for the next one", type(exc).__name__
            )
            for caller, n in batch.items():
                if caller in self._counts or len(self._counts) < self._max:
                    self._counts[caller] += n
                else:
                    metrics.USAGE_DROPPED.inc(n)
            for slot, totals in models.items():
                kept = self._models.setdefault(slot, [0, 0, 0])
                for i, value in enumerate(totals):
                    kept[i] += value
        except Exception as exc:  # sent, its answer lost: it may be counted; never twice
            log.warning("usage report sent, its answer lost (%s); not sent again",
                        type(exc).__name__)  # fmt: skip
            metrics.USAGE_UNCONFIRMED.inc(sum(batch.values()) + len(models))

    async def aclose(self) -> None:
        await self._reports.stop()
        with contextlib.suppress(Exception):
            await self.flush()

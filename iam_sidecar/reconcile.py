"""The reconcile loop: make Casdoor match the tenant file, refresh key owners' grants.

Casdoor webhooks are unsigned and skip writes made with application credentials, so the
sidecar polls. A role taken away in Casdoor reaches a key's verify answer within one
interval (plus the gateway's verify cache TTL); a Casdoor outage only delays that, the
last known grants keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from hanzo_contract.principal import PrincipalKind
from iam_sidecar.errors import UpstreamUnavailable
from iam_sidecar.keys.models import OwnerGrant
from iam_sidecar.state import SidecarState

log = logging.getLogger(__name__)

#: Optional tenant-sync step (set by the app when a tenant file is configured).
TenantStep = Callable[[SidecarState], Awaitable[None]]


class ReconcileResult(BaseModel):
    owners_refreshed: int = 0
    owners_changed: int = 0
    error: str | None = None


async def refresh_owners(state: SidecarState, concurrency: int = 8) -> ReconcileResult:
    """Ask Casdoor about every owner of a live key and store what it says.

    One ``get-user`` per owner, ``concurrency`` at a time; if Casdoor fails, the grants
    already stored keep serving and the error propagates (the run counts as failed).
    """
    owners = await state.keys.live_owners()
    gate = asyncio.Semaphore(concurrency)

    async def fetch(owner: str, kind: PrincipalKind) -> OwnerGrant:
        async with gate:
            return await state.resolver.resolve(owner, kind, fresh=True)

    grants = await asyncio.gather(*(fetch(owner, kind) for owner, kind in owners))
    result = ReconcileResult()
    for grant in grants:
        before = await state.keys.get_grant(grant.owner)
        await state.keys.put_grant(grant)
        result.owners_refreshed += 1
        if before is None or before.model_dump(exclude={"refreshed_at"}) != grant.model_dump(
            exclude={"refreshed_at"}
        ):
            result.owners_changed += 1
    return result


async def reconcile_once(state: SidecarState, tenant_step: TenantStep | None) -> ReconcileResult:
    started = time.perf_counter()
    try:
        if tenant_step is not None:
            await tenant_step(state)
        result = await refresh_owners(state)
    except UpstreamUnavailable as exc:
        state.metrics.casdoor_up.set(0)
        state.metrics.reconcile.labels("casdoor_down").inc()
        state.last_reconcile_error = exc.message
        log.warning("reconcile skipped: %s", exc.message)
        return ReconcileResult(error=exc.message)
    except Exception as exc:
        state.metrics.reconcile.labels("error").inc()
        state.last_reconcile_error = f"{type(exc).__name__}: {exc}"
        log.exception("reconcile failed")
        return ReconcileResult(error=state.last_reconcile_error)
    finally:
        state.metrics.reconcile_seconds.observe(time.perf_counter() - started)
    state.metrics.casdoor_up.set(1)
    state.metrics.reconcile.labels("ok").inc()
    state.metrics.last_reconcile.set(time.time())
    state.last_reconcile_error = None
    return result


async def reconcile_forever(state: SidecarState, tenant_step: TenantStep | None) -> None:
    interval = state.settings.reconcile_interval_seconds
    while True:
        await reconcile_once(state, tenant_step)
        try:
            async with state.writing:
                await state.keys.flush()
        except Exception:  # a busy or failing disk must not end the loop
            log.exception("flushing usage counters failed; will retry")
        await asyncio.sleep(interval)

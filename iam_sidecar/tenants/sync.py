"""The reconcile loop's tenant step: reload the file, serve its policy, apply it."""

from __future__ import annotations

import logging
from pathlib import Path

from iam_sidecar.errors import SidecarError, UpstreamUnavailable
from iam_sidecar.reconcile import TenantStep
from iam_sidecar.state import SidecarState
from iam_sidecar.tenants.apply import apply_plan
from iam_sidecar.tenants.desired import policy_of
from iam_sidecar.tenants.loader import load_tenant_file

log = logging.getLogger(__name__)


def tenant_step(path: Path, prune: bool = False, apply: bool = True) -> TenantStep:
    """Each run re-reads ``path``: a valid file replaces the served policy and is applied;
    an invalid one is logged and the last good policy keeps serving."""

    async def step(state: SidecarState) -> None:
        try:
            spec = load_tenant_file(path)
        except SidecarError as exc:
            log.error("tenant file not reloaded: %s", exc.message)
            state.last_reconcile_error = exc.message
            return
        state.policy = policy_of(spec)
        if not apply:
            return
        try:
            result = await apply_plan(
                state.casdoor,
                spec,
                prune=prune,
                db=state.keys.db,
                actor="reconcile",
                assets_url=state.settings.casdoor_assets_url,
            )
        except UpstreamUnavailable:
            raise
        except SidecarError as exc:
            log.error("tenant apply failed: %s", exc.message)
            state.last_reconcile_error = exc.message
            return
        if result.applied:
            log.info("reconcile applied %d tenant changes", len(result.applied))

    return step

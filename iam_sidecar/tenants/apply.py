"""Apply: make Casdoor match the tenant file, in dependency order, saying exactly how far
it got if Casdoor fails midway (Casdoor has no transactions across objects).

Everything that can be checked is checked before the first write: the file, conflicts
with objects we do not manage, seed-user password env vars, Casdoor being reachable.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.casdoor.errors import CasdoorError, CasdoorUnavailable
from iam_sidecar.db.database import Database
from iam_sidecar.errors import (
    ApplyConflict,
    ApplyFailed,
    InvalidRequest,
    UpstreamUnavailable,
)
from iam_sidecar.records import audit
from iam_sidecar.tenants.desired import Desired, desired_objects
from iam_sidecar.tenants.model import TenantFile
from iam_sidecar.tenants.plan import Change, Plan, compute_plan, merged, snapshot

log = logging.getLogger(__name__)


class ApplyResult(BaseModel):
    plan: Plan
    applied: list[str] = []


async def make_plan(
    client: CasdoorClient, spec: TenantFile, prune: bool = False, assets_url: str | None = None
) -> Plan:
    try:
        snap = await snapshot(client, {o.name for o in spec.organizations})
    except CasdoorUnavailable as exc:
        raise UpstreamUnavailable(
            f"Casdoor is unavailable, nothing was read or changed: {exc.message}"
        ) from None
    return compute_plan(desired_objects(spec, assets_url), snap, prune=prune)


def _preflight(
    plan: Plan, desired: dict[tuple[str, str, str], Desired], env: Mapping[str, str]
) -> None:
    if plan.conflicts:
        raise ApplyConflict(
            "objects in the tenant file exist in Casdoor but are not managed by hanzo; "
            "nothing was applied",
            {"conflicts": [f"{c.kind} {c.ident}" for c in plan.conflicts]},
        )
    missing = sorted(
        d.password_env
        for c in plan.writes
        if c.action == "create"
        and (d := desired.get((c.kind, c.owner, c.name))) is not None
        and d.password_env
        and not env.get(d.password_env)
    )
    if missing:
        raise InvalidRequest(
            "seed user password env vars are not set; nothing was applied",
            {"missing_env": missing},
        )


async def _write(
    client: CasdoorClient, change: Change, desired: Desired | None, env: Mapping[str, str]
) -> None:
    if change.action == "create":
        assert desired is not None
        obj: dict[str, Any] = {
            "owner": change.owner,
            "name": change.name,
            **desired.create_only,
            **desired.fields,
        }
        if change.kind == "user":
            env_name = desired.password_env
            obj["password"] = env[env_name] if env_name else secrets.token_urlsafe(24)
        if change.kind == "application":
            obj.setdefault("redirectUris", [])
        await client.add_object(change.kind, obj)
    elif change.action == "update":
        assert desired is not None
        current = await client.get_object(change.kind, change.owner, change.name)
        if current is None:
            raise CasdoorError(f"{change.kind} {change.ident} vanished", action="update")
        await client.update_object(change.kind, change.owner, change.name, merged(desired, current))
    elif change.action == "delete":
        current = await client.get_object(change.kind, change.owner, change.name)
        if current is not None:
            await client.delete_object(change.kind, current)


async def apply_plan(
    client: CasdoorClient,
    spec: TenantFile,
    *,
    prune: bool = False,
    db: Database | None = None,
    actor: str = "tenants-apply",
    env: Mapping[str, str] | None = None,
    assets_url: str | None = None,
) -> ApplyResult:
    """Plan, check, then write each change; every write is audited when ``db`` is given.

    Another applier may write the same changes at once (each sidecar replica's reconcile
    loop, ``hanzo up``'s apply): a write Casdoor refuses whose change a fresh plan no
    longer holds was made by the other, and the rest of the fresh plan is applied."""
    plan = first = await make_plan(client, spec, prune=prune, assets_url=assets_url)
    desired = {(d.kind, d.owner, d.name): d for d in desired_objects(spec, assets_url)}
    env = os.environ if env is None else env
    applied: list[str] = []
    # each fresh plan lacks at least the change the other applier made: it ends in as
    # many rounds as there were changes, unless another applier undoes ours meanwhile
    rounds = len(first.writes) + 1
    for _ in range(rounds):
        _preflight(plan, desired, env)
        writes = plan.writes
        for i, change in enumerate(writes):
            label = f"{change.action} {change.kind} {change.ident}"
            try:
                await _write(
                    client, change, desired.get((change.kind, change.owner, change.name)), env
                )
            except CasdoorError as exc:
                await _audit(db, actor, change, f"error: {exc.message}")
                if not isinstance(exc, CasdoorUnavailable):
                    again = await make_plan(client, spec, prune=prune, assets_url=assets_url)
                    if label not in {f"{c.action} {c.kind} {c.ident}" for c in again.writes}:
                        plan = again  # made by another applier meanwhile: on with the rest
                        break
                details = {
                    "applied": applied,
                    "failed": label,
                    "error": exc.message,
                    "not_applied": [f"{c.action} {c.kind} {c.ident}" for c in writes[i + 1 :]],
                }
                cause = "unreachable" if isinstance(exc, CasdoorUnavailable) else "refused"
                raise ApplyFailed(
                    f"Casdoor {cause} at '{label}' after {len(applied)} of {len(writes)} "
                    "changes; the applied ones stay (run apply again to finish)",
                    details,
                ) from None
            applied.append(label)
            await _audit(db, actor, change, "ok")
            log.info("tenant sync: %s", label)
        else:
            return ApplyResult(plan=first, applied=applied)
    raise ApplyFailed(
        f"the tenants did not converge in {rounds} rounds: another applier keeps changing them",
        {"applied": applied},
    )


async def _audit(db: Database | None, actor: str, change: Change, outcome: str) -> None:
    if db is None:
        return
    # applications are owned by "admin"; their tenant is in the target's name space
    organization = change.owner if change.owner != "admin" else change.name
    if change.kind == "application":
        organization = None
    async with db.transaction() as conn:
        await audit.append(
            conn,
            actor=actor,
            action=f"sync.{change.action}",
            outcome=outcome,
            organization=organization,
            target=f"{change.kind} {change.ident}",
            source="tenant-file",
            details={"fields": [d.field for d in change.diffs]} if change.diffs else None,
        )

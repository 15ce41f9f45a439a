"""Turning a key record (or a resolved owner) into the contract's :class:`Principal`."""

from __future__ import annotations

from hanzo_contract.principal import Limits, Principal, PrincipalKind
from iam_sidecar.keys.models import KeyRecord, OwnerGrant


def key_principal(record: KeyRecord, grant: OwnerGrant | None, plan: Limits) -> Principal:
    """A key carries at most its owner's current scopes: the intersection of both.

    ``grant`` is what Casdoor last said (refreshed by the reconcile loop); without one yet
    the key's own scopes stand, as they were checked against Casdoor at creation.
    """
    scopes = record.scopes & grant.scopes if grant is not None else record.scopes
    return Principal(
        organization=record.organization,
        subject=record.owner,
        kind=record.owner_kind,
        roles=grant.roles if grant is not None else (),
        scopes=scopes,
        key_id=record.key_id,
        is_org_admin=grant.is_org_admin if grant is not None else False,
        # a key's own limits only tighten its plan (whatever was stored, by whatever path)
        limits=plan.tightened_by(record.limits),
        org_limits=plan,
    )


def owner_principal(grant: OwnerGrant, kind: PrincipalKind, plan: Limits) -> Principal:
    return Principal(
        organization=grant.owner.split("/", 1)[0],
        subject=grant.owner,
        kind=kind,
        roles=grant.roles,
        scopes=grant.scopes,
        is_org_admin=grant.is_org_admin,
        limits=plan,
        org_limits=plan,
    )

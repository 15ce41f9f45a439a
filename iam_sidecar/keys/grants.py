"""Who may grant what: the rules a new key (or a rotation) is held to, as pure functions.

A credential can only hand out less than it has. Casdoor's roles bound a key's owner; these
rules bound whoever asks: the plan bounds every key's limits; a caller's own scopes and
limits bound what it mints (a manager minting for a member included); a key mints or
rotates keys only with ``keys:manage`` on it, and a key it mints expires no later than
itself, records it as parent, and is revoked with it (``KeyStore.revoke`` cascades).

Kept free of I/O so the property tests can run them on any input; ``KeyIssuer`` applies
them and audits every refusal.
"""

from __future__ import annotations

from dataclasses import replace

from hanzo_contract.principal import Limits, Principal
from hanzo_contract.scopes import KEYS_MANAGE
from iam_sidecar.errors import (
    ExpiryEscalation,
    LimitEscalation,
    ManageRequired,
    ParentKeyInactive,
    ScopeEscalation,
)
from iam_sidecar.keys.models import KeyRecord, KeyState, NewKey


def bound_new_key(
    new: NewKey,
    *,
    plan: Limits,
    minter: Principal | None,
    parent: KeyRecord | None,
    now: float,
) -> NewKey:
    """``new`` as it may be stored (expiry inherited, parent recorded), or a refusal.

    ``minter`` is the caller (``None``: the operator's CLI); ``parent`` the stored record
    of the calling key when the caller is a key (the assertion's view may be stale).
    """
    if new.limits is not None and (looser := new.limits.looser_than(plan)):
        raise LimitEscalation(
            f"limits may only tighten the plan's: {', '.join(looser)}",
            {"looser_fields": looser, "plan": plan.model_dump(exclude_none=True)},
        )
    if minter is None:
        return new
    if minter.key_id is not None:
        if not minter.has(KEYS_MANAGE):
            raise ManageRequired(f"a key needs {KEYS_MANAGE} to create keys")
        if parent is None or parent.state(now) is not KeyState.ACTIVE:
            raise ParentKeyInactive("the key asking for a key is no longer active")
    excess = sorted(frozenset(new.scopes) - minter.scopes)
    if excess:
        raise ScopeEscalation(
            "a caller cannot grant scopes it does not carry",
            {"excess_scopes": excess, "caller_scopes": sorted(minter.scopes)},
        )
    bound = plan.tightened_by(minter.limits)
    if new.limits is not None and (looser := new.limits.looser_than(bound)):
        raise LimitEscalation(
            f"limits may not be looser than the caller's: {', '.join(looser)}",
            {"looser_fields": looser, "caller_limits": bound.model_dump(exclude_none=True)},
        )
    if bound != plan:
        # fields the child leaves unset keep its caller's tighter limits, not the plan's
        new = replace(new, limits=bound.tightened_by(new.limits))
    if parent is None:
        return new
    expires_at = new.expires_at
    if parent.expires_at is not None:
        if expires_at is None:
            expires_at = parent.expires_at  # a child lives at most as long as its parent
        elif expires_at > parent.expires_at:
            raise ExpiryEscalation(
                "a key cannot create a key that outlives it",
                {"requested_expires_at": expires_at, "caller_expires_at": parent.expires_at},
            )
    return replace(new, expires_at=expires_at, parent_key_id=parent.key_id)


def check_rotation(
    caller: Principal,
    target: KeyRecord,
    *,
    plan: Limits,
    parent: KeyRecord | None,
    now: float,
) -> None:
    """Rotating hands the caller a fresh secret of ``target``: it is held to what minting
    that very key would be (``keys:manage`` on a calling key, scopes within the caller's,
    an expiry no later than the calling key's, limits no looser than the caller's), or a
    key with ``keys:manage`` could take over any wider or lasting key of its organization.

    The rotated key keeps its id, scopes, limits and original expiry (``KeyStore.rotate``
    never touches them), so where minting would have narrowed the key (inherited the
    caller's expiry, its tighter limits) rotation is refused instead.
    """
    if caller.key_id is not None and not caller.has(KEYS_MANAGE):
        raise ManageRequired(f"a key needs {KEYS_MANAGE} to rotate keys")
    as_minted = bound_new_key(
        NewKey(
            organization=target.organization,
            owner=target.owner,
            owner_kind=target.owner_kind,
            name=target.name,
            scopes=target.scopes,
            expires_at=target.expires_at,
            limits=target.limits,
        ),
        plan=plan,
        minter=caller,
        parent=parent,
        now=now,
    )
    if as_minted.expires_at != target.expires_at:
        raise ExpiryEscalation(
            "a key cannot take over a key that outlives it",
            {"key_expires_at": target.expires_at, "caller_expires_at": as_minted.expires_at},
        )
    if plan.tightened_by(as_minted.limits) != plan.tightened_by(target.limits):
        raise LimitEscalation(
            "a caller cannot take over a key with looser limits than its own",
            {"caller_limits": plan.tightened_by(caller.limits).model_dump(exclude_none=True)},
        )

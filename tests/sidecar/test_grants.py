"""Grants that must not be possible, as properties: the rules hold for any input.

The rules themselves (``iam_sidecar.keys.grants``) are pure; lineage and the per-owner
cap are checked on the real SQLite key store; scope computation on Casdoor-shaped user
objects mixing owners. The same grants through the HTTP API and the real Casdoor are in
``test_grants_http.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanzo_contract.principal import Limits, Principal
from hanzo_contract.scopes import KEYS_MANAGE, KNOWN_SCOPES
from iam_sidecar.casdoor.scopes import MANAGED_MARKER, scopes_of_user_object
from iam_sidecar.errors import (
    ExpiryEscalation,
    GrantRefused,
    KeyVerificationError,
    LimitEscalation,
    ManageRequired,
    ParentKeyInactive,
    ScopeEscalation,
    TooManyKeys,
    UnknownScope,
)
from iam_sidecar.keys.grants import bound_new_key, check_rotation
from iam_sidecar.keys.models import KeyRecord, KeyState, NewKey
from iam_sidecar.keys.principals import key_principal
from iam_sidecar.keys.store import KeyStore

from .helpers import ManualClock, StoreTarget

NOW = 1_800_000_000.0
SCOPES = sorted(KNOWN_SCOPES)

scope_sets = st.frozensets(st.sampled_from(SCOPES))
limit_values = st.one_of(st.none(), st.integers(min_value=1, max_value=10**12))
limits = st.builds(
    Limits,
    requests_per_minute=limit_values,
    units_per_day=limit_values,
    units_per_month=limit_values,
)
expiries = st.one_of(st.none(), st.floats(min_value=NOW + 1, max_value=NOW + 10 * 365 * 86400))


def _within(effective: Limits, bound: Limits) -> bool:
    """As charged: every field ``bound`` limits is limited at least as tightly."""
    mine, theirs = effective.model_dump(), bound.model_dump()
    return all(
        mine[name] is not None and mine[name] <= limit
        for name, limit in theirs.items()
        if limit is not None
    )


def _caller_key(scopes: frozenset[str], expires_at: float | None, own: Limits) -> KeyRecord:
    return KeyRecord(
        key_id="parentkey001",
        organization="acme",
        owner="acme/alice",
        name="parent",
        scopes=scopes,
        limits=own,
        created_at=NOW - 10,
        expires_at=expires_at,
    )


# ---- the rules, for any caller and any request -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    caller_scopes=scope_sets,
    caller_expiry=expiries,
    caller_limits=limits,
    plan=limits,
    asked_scopes=scope_sets,
    asked_expiry=expiries,
    asked_limits=st.one_of(st.none(), limits),
)
def test_a_child_key_never_exceeds_its_parent(
    caller_scopes: frozenset[str],
    caller_expiry: float | None,
    caller_limits: Limits,
    plan: Limits,
    asked_scopes: frozenset[str],
    asked_expiry: float | None,
    asked_limits: Limits | None,
) -> None:
    """Whatever a key asks for, what gets stored is within it (or the ask is refused)."""
    parent = _caller_key(caller_scopes, caller_expiry, caller_limits)
    caller = key_principal(parent, None, plan)  # what the gateway's assertion carries
    new = NewKey(
        organization="acme",
        owner="acme/alice",
        name="child",
        scopes=asked_scopes,
        expires_at=asked_expiry,
        limits=asked_limits,
    )
    try:
        child = bound_new_key(new, plan=plan, minter=caller, parent=parent, now=NOW)
    except GrantRefused:
        return
    assert KEYS_MANAGE in caller_scopes  # a key without keys:manage never mints
    assert frozenset(child.scopes) <= caller.scopes
    if caller_expiry is not None:
        assert child.expires_at is not None and child.expires_at <= caller_expiry
    assert child.parent_key_id == parent.key_id
    # the child's limits as the gateway will charge them: never looser than its caller's
    child_record = parent.model_copy(
        update={"key_id": "childkey0001", "limits": child.limits, "scopes": child.scopes}
    )
    effective = key_principal(child_record, None, plan).limits
    assert _within(effective, caller.limits) and _within(effective, plan)


@settings(max_examples=200, deadline=None)
@given(plan=limits, asked=limits, caller_limits=limits)
def test_limits_only_tighten(plan: Limits, asked: Limits, caller_limits: Limits) -> None:
    """A key's own limits can only lower its plan's, field by field, at issue and at use."""
    effective = plan.tightened_by(asked)
    assert _within(effective, plan) and _within(effective, asked)
    new = NewKey(organization="acme", owner="acme/bob", name="k", scopes=[], limits=asked)
    caller = Principal(organization="acme", subject="acme/bob", limits=caller_limits)
    for minter in (None, caller):
        try:
            bound_new_key(new, plan=plan, minter=minter, parent=None, now=NOW)
        except LimitEscalation:
            assert asked.looser_than(plan) or (
                minter is not None and asked.looser_than(plan.tightened_by(caller_limits))
            )
        else:  # an ask that passes is within the plan, and within the caller's own limits
            assert asked.looser_than(plan) == []
            if minter is not None:
                assert asked.looser_than(plan.tightened_by(caller_limits)) == []


def test_the_issue_reproduction_limits_are_refused() -> None:
    """A reader asks for a billion requests a minute on a 600 rpm plan: refused, and even
    a key stored that way (by any path) is charged at the plan, its org at the plan."""
    plan = Limits(requests_per_minute=600, units_per_day=100000)
    reader = Principal(
        organization="acme", subject="acme/bob", scopes=frozenset({"memory:read"}), limits=plan
    )
    greedy = NewKey(
        organization="acme",
        owner="acme/bob",
        name="fast",
        scopes=["memory:read"],
        limits=Limits(requests_per_minute=1_000_000_000),
    )
    with pytest.raises(LimitEscalation) as info:
        bound_new_key(greedy, plan=plan, minter=reader, parent=None, now=NOW)
    assert info.value.details["looser_fields"] == ["requests_per_minute"]
    stored = _caller_key(frozenset({"memory:read"}), None, Limits(requests_per_minute=10**9))
    principal = key_principal(stored, None, plan)
    assert principal.limits == plan and principal.org_limits == plan


def test_minting_a_wider_key_from_a_narrowed_one_is_refused() -> None:
    """Guard: an admin's key narrowed to memory:read + keys:manage cannot mint memory:write,
    although the admin's roles grant it (the issuer's Casdoor check would let it pass)."""
    narrowed = _caller_key(frozenset({"memory:read", KEYS_MANAGE}), None, Limits())
    caller = key_principal(narrowed, None, Limits())
    wider = NewKey(
        organization="acme",
        owner="acme/alice",
        name="wider",
        scopes=["memory:read", "memory:write"],
    )
    with pytest.raises(ScopeEscalation) as info:
        bound_new_key(wider, plan=Limits(), minter=caller, parent=narrowed, now=NOW)
    assert info.value.details["excess_scopes"] == ["memory:write"]


def test_a_key_needs_keys_manage_to_mint_or_rotate() -> None:
    plain = _caller_key(frozenset({"memory:read"}), None, Limits())
    caller = key_principal(plain, None, Limits())
    same = NewKey(organization="acme", owner="acme/alice", name="x", scopes=["memory:read"])
    with pytest.raises(ManageRequired):
        bound_new_key(same, plan=Limits(), minter=caller, parent=plain, now=NOW)
    with pytest.raises(ManageRequired):
        check_rotation(caller, plain, plan=Limits(), parent=plain, now=NOW)
    # a signed-in user (no key) needs nothing more to mint or rotate its own keys
    user = Principal(organization="acme", subject="acme/alice", scopes={"memory:read"})
    check_rotation(user, plain, plan=Limits(), parent=None, now=NOW)
    assert bound_new_key(same, plan=Limits(), minter=user, parent=None, now=NOW) == same


def test_rotation_hands_out_no_more_than_the_caller_has() -> None:
    """Rotating gives the caller the key's fresh secret: a managing key may not take over a
    wider, longer-lived or less limited key (found by tests/security/test_keys_fuzz.py);
    it may still rotate itself and keys within its own reach."""
    plan = Limits(requests_per_minute=600, units_per_day=100000)
    tight = Limits(requests_per_minute=300)
    manager = _caller_key(frozenset({"memory:read", KEYS_MANAGE}), NOW + 3600, tight)
    caller = key_principal(manager, None, plan)
    within = manager.model_copy(update={"key_id": "withinkey001", "scopes": {"memory:read"}})

    def rotate(target: KeyRecord) -> None:
        check_rotation(caller, target, plan=plan, parent=manager, now=NOW)

    rotate(manager)  # itself
    rotate(within)
    with pytest.raises(ScopeEscalation):
        rotate(within.model_copy(update={"scopes": {"memory:read", "memory:delete"}}))
    with pytest.raises(ExpiryEscalation):
        rotate(within.model_copy(update={"expires_at": None}))
    with pytest.raises(ExpiryEscalation):
        rotate(within.model_copy(update={"expires_at": NOW + 7200}))
    with pytest.raises(LimitEscalation):
        rotate(within.model_copy(update={"limits": None}))  # charged at the plan's 600
    with pytest.raises(ParentKeyInactive):
        check_rotation(
            caller,
            within,
            plan=plan,
            parent=manager.model_copy(update={"revoked_at": NOW - 1}),
            now=NOW,
        )
    # a manager signed in (no key) is bounded by its scopes and limits, not by an expiry
    user = Principal(organization="acme", subject="acme/alice", scopes={"memory:read"})
    check_rotation(user, within.model_copy(update={"expires_at": None}), plan=plan, parent=None,
                   now=NOW)  # fmt: skip
    with pytest.raises(ScopeEscalation):
        check_rotation(
            user, within.model_copy(update={"scopes": {KEYS_MANAGE}}), plan=plan, parent=None,
            now=NOW,
        )  # fmt: skip


def test_a_child_inherits_its_parents_expiry_and_may_not_outlive_it() -> None:
    parent = _caller_key(frozenset({"memory:read", KEYS_MANAGE}), NOW + 3600, Limits())
    caller = key_principal(parent, None, Limits())
    unbounded = NewKey(organization="acme", owner="acme/alice", name="c", scopes=[])
    child = bound_new_key(unbounded, plan=Limits(), minter=caller, parent=parent, now=NOW)
    assert child.expires_at == NOW + 3600 and child.parent_key_id == parent.key_id
    later = NewKey(
        organization="acme", owner="acme/alice", name="c", scopes=[], expires_at=NOW + 7200
    )
    with pytest.raises(ExpiryEscalation):
        bound_new_key(later, plan=Limits(), minter=caller, parent=parent, now=NOW)
    revoked = parent.model_copy(update={"revoked_at": NOW - 1})
    with pytest.raises(ParentKeyInactive):
        bound_new_key(unbounded, plan=Limits(), minter=caller, parent=revoked, now=NOW)


# ---- lineage on the real store: revoking a key revokes its descendants ----------------

trees = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=12)


async def _lineage_case(parents: list[int], doomed_at: int) -> None:
    """Key ``i + 1`` is minted by key ``parents[i] % (i + 1)`` (key 0 is the root)."""
    clock = ManualClock(NOW)
    with tempfile.TemporaryDirectory() as tmp:
        store = await KeyStore.open(Path(tmp) / "k.db", secrets.token_bytes(32), clock=clock)
        try:
            plaintexts, ids, parent_of = [], [], {}
            for i in range(len(parents) + 1):
                parent = None if i == 0 else parents[i - 1] % i
                new = NewKey(
                    organization="acme",
                    owner="acme/alice",
                    name=f"k{i}",
                    scopes=["memory:read"],
                    parent_key_id=None if parent is None else ids[parent],
                )
                plaintext, record = await store.create(new)
                plaintexts.append(plaintext)
                ids.append(record.key_id)
                parent_of[i] = parent
            doomed = doomed_at % len(ids)
            await store.revoke("acme", ids[doomed])

            def descends(i: int) -> bool:
                while i is not None:
                    if i == doomed:
                        return True
                    i = parent_of[i]
                return False

            for i, plaintext in enumerate(plaintexts):
                record = await store.show("acme", ids[i])
                if descends(i):
                    assert record.state(clock()) is KeyState.REVOKED
                    with pytest.raises(KeyVerificationError):
                        await store.verify(plaintext)
                else:
                    assert (await store.verify(plaintext)).key_id == ids[i]
            audit = await store.audit.query(action="key.revoke")
            expected = sorted(ids[i] for i in parent_of if descends(i) and i != doomed)
            assert (audit[0].details or {}).get("descendants", []) == expected
        finally:
            await store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parents=trees, doomed_at=st.integers(min_value=0, max_value=50))
def test_revoking_a_key_revokes_its_descendants(parents: list[int], doomed_at: int) -> None:
    asyncio.run(_lineage_case(parents, doomed_at))


async def test_a_child_cannot_be_stored_under_a_dead_or_shorter_lived_parent(
    store: KeyStore, clock: ManualClock
) -> None:
    """The store checks the parent inside the insert's transaction (a race cannot slip a
    child under a parent revoked a moment ago), and expiry is enforced there too."""
    _, parent = await store.create(
        NewKey(
            organization="acme",
            owner="acme/alice",
            name="p",
            scopes=["memory:read"],
            expires_at=clock() + 60,
        )
    )

    def child(name: str, expires_at: float | None) -> NewKey:
        return NewKey(
            organization="acme",
            owner="acme/alice",
            name=name,
            scopes=["memory:read"],
            expires_at=expires_at,
            parent_key_id=parent.key_id,
        )

    with pytest.raises(ExpiryEscalation):
        await store.create(child("forever", None))
    with pytest.raises(ExpiryEscalation):
        await store.create(child("longer", clock() + 61))
    key, _ = await store.create(child("ok", clock() + 60))
    clock.advance(60)
    with pytest.raises(KeyVerificationError):
        await store.verify(key)  # expires with its parent
    with pytest.raises(ParentKeyInactive):
        await store.create(child("late", clock() + 1))
    # a parent revoked a moment ago (its gateway-cached assertion still verifies)
    _, lasting = await store.create(
        NewKey(organization="acme", owner="acme/alice", name="q", scopes=["memory:read"])
    )
    await store.revoke("acme", lasting.key_id)
    orphan = NewKey(
        organization="acme",
        owner="acme/alice",
        name="orphan",
        scopes=["memory:read"],
        parent_key_id=lasting.key_id,
    )
    with pytest.raises(ParentKeyInactive):
        await store.create(orphan)


async def test_keys_per_owner_are_capped(store_target: StoreTarget, clock: ManualClock) -> None:
    store = await store_target.open(secrets.token_bytes(32), clock=clock, max_keys_per_owner=3)
    try:
        made = []
        for i in range(3):
            _, record = await store.create(
                NewKey(organization="acme", owner="acme/bob", name=f"k{i}", scopes=[])
            )
            made.append(record)
        with pytest.raises(TooManyKeys) as info:
            await store.create(NewKey(organization="acme", owner="acme/bob", name="k3", scopes=[]))
        assert info.value.status == 409 and info.value.code == "too_many_keys"
        # another owner is not affected; a revoked key frees its place
        await store.create(NewKey(organization="acme", owner="acme/carl", name="k", scopes=[]))
        await store.revoke("acme", made[0].key_id)
        await store.create(NewKey(organization="acme", owner="acme/bob", name="k3", scopes=[]))
    finally:
        await store.close()


async def test_concurrent_mints_through_two_stores_respect_the_cap_exactly(
    store_target: StoreTarget, clock: ManualClock
) -> None:
    """Two stores on one database (two replicas: own connections, own pools) mint at once:
    exactly the cap succeeds, the rest are refused, whatever the interleaving."""
    secret, cap = secrets.token_bytes(32), 4
    stores = [
        await store_target.open(secret, clock=clock, max_keys_per_owner=cap) for _ in range(2)
    ]
    try:

        async def mint(i: int) -> bool:
            new = NewKey(organization="acme", owner="acme/dana", name=f"k{i}", scopes=[])
            try:
                await stores[i % 2].create(new)
            except TooManyKeys:
                return False
            return True

        outcomes = await asyncio.gather(*(mint(i) for i in range(24)))
        assert outcomes.count(True) == cap
        assert len(await stores[0].list("acme", owner="acme/dana")) == cap
    finally:
        for store in stores:
            await store.close()


async def test_a_parent_revoked_on_one_store_leaves_no_live_child_minted_on_the_other(
    store_target: StoreTarget, clock: ManualClock
) -> None:
    """Revocation and minting under the same parent race on two stores: whichever commits
    first, no child outlives the revocation (the organization's lock orders them)."""
    secret = secrets.token_bytes(32)
    stores = [await store_target.open(secret, clock=clock) for _ in range(2)]
    try:
        for round_ in range(3):
            _, parent = await stores[0].create(
                NewKey(organization="acme", owner="acme/erin", name=f"p{round_}", scopes=[])
            )

            async def mint(i: int, parent_id: str = parent.key_id, r: int = round_) -> None:
                new = NewKey(
                    organization="acme",
                    owner="acme/erin",
                    name=f"c{r}-{i}",
                    scopes=[],
                    parent_key_id=parent_id,
                )
                with contextlib.suppress(ParentKeyInactive):
                    await stores[1].create(new)

            await asyncio.gather(
                *(mint(i) for i in range(6)), stores[0].revoke("acme", parent.key_id)
            )
            children = [r for r in await stores[0].list("acme") if r.parent_key_id == parent.key_id]
            assert all(r.state(clock()) is KeyState.REVOKED for r in children)
    finally:
        for store in stores:
            await store.close()


async def test_unknown_scopes_are_refused_by_the_store(store: KeyStore) -> None:
    with pytest.raises(UnknownScope) as info:
        await store.create(
            NewKey(organization="acme", owner="acme/bob", name="t", scopes=["memory:teleport"])
        )
    assert info.value.status == 400 and info.value.details == {
        "unknown_scopes": ["memory:teleport"]
    }


# ---- scope computation: only the user's own organization's objects grant --------------

owners = st.sampled_from(["acme", "globex", "initech"])


@st.composite
def casdoor_users(draw: st.DrawFn) -> dict[str, object]:
    """A ``get-user`` answer for ``globex/carol`` whose roles and permissions are owned by
    any organization (Casdoor's lookup does not filter by owner)."""
    roles = draw(
        st.lists(
            st.fixed_dictionaries(
                {"owner": owners, "name": st.sampled_from(["member", "admin", "reader"])}
            ),
            max_size=5,
        )
    )
    permissions = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        scope = draw(st.sampled_from(SCOPES))
        area, action = scope.split(":")
        permissions.append(
            {
                "owner": draw(owners),
                "name": f"{area}-{action}",
                "description": f"{MANAGED_MARKER} x",
                "resources": [area],
                "actions": [action],
                "effect": "Allow",
                "roles": draw(
                    st.lists(
                        st.builds(
                            lambda o, n: f"{o}/{n}",
                            owners,
                            st.sampled_from(["member", "admin", "reader"]),
                        ),
                        max_size=2,
                    )
                ),
            }
        )
    return {"owner": "globex", "name": "carol", "roles": roles, "permissions": permissions}


@settings(max_examples=300, deadline=None)
@given(user=casdoor_users())
def test_roles_and_permissions_of_other_organizations_never_grant(
    user: dict[str, object],
) -> None:
    role_names, scopes = scopes_of_user_object(user)
    own_roles = {r["name"] for r in user["roles"] if r["owner"] == "globex"}  # type: ignore[index, union-attr]
    assert set(role_names) <= own_roles
    own_grants = {
        f"{p['resources'][0]}:{p['actions'][0]}"
        for p in user["permissions"]  # type: ignore[union-attr]
        if p["owner"] == "globex"
        and (not p["roles"] or {f"globex/{n}" for n in own_roles} & set(p["roles"]))
    }
    assert scopes == own_grants
    # the same objects moved to the user's own organization do grant: the filter is on owner
    moved = {
        **user,
        "roles": [{**r, "owner": "globex"} for r in user["roles"]],  # type: ignore[union-attr]
        "permissions": [
            {**p, "owner": "globex", "roles": [f"globex/{r.split('/')[1]}" for r in p["roles"]]}
            for p in user["permissions"]  # type: ignore[union-attr]
        ],
    }
    assert scopes <= scopes_of_user_object(moved)[1]

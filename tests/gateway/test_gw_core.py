"""The decision core over a named fake sidecar: every outcome, caching, assertion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_plugins.cache.principals import PrincipalCache
from gateway_plugins.core import DecisionCore
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.request import AuthRequest
from gateway_plugins.routes import RouteTable
from hanzo_contract.assertion import AssertionSigner, AssertionVerifier, InvalidAssertion
from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_contract.principal import Limits, Principal
from hanzo_contract.verify import VerifyResponse
from tests.gateway.conftest import ROUTES
from tests.support.clock import FakeClock

KEY = "hk-abcdefghijkl_" + "A" * 43
OTHER = "hk-zzzzzzzzzzzz_" + "B" * 43


def principal(**kw: object) -> Principal:
    base: dict[str, object] = {
        "organization": "acme",
        "subject": "acme/alice",
        "roles": ("member",),
        "scopes": frozenset({"memory:read"}),
        "key_id": "abcdefghijkl",
    }
    base.update(kw)
    return Principal.model_validate(base)


def req(method: str = "GET", uri: str = "/v1/memory/retrieve", **headers: str) -> AuthRequest:
    h = {"authorization": f"Bearer {KEY}"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return AuthRequest(method, uri, {k: v for k, v in h.items() if v})


async def test_valid_key_allows_with_identity_and_assertion(
    core: DecisionCore, sidecar, verifier: AssertionVerifier
) -> None:
    sidecar.keys[KEY] = principal()
    d = await core.decide(req(uri="/v1/memory/retrieve?q=1"))
    assert d.status == 200
    assert set(IDENTITY_HEADERS) <= set(d.headers)
    assert d.headers["X-User-Id"] == "acme/alice"
    assert d.headers["X-Org-Id"] == "acme"
    assert d.headers["X-Key-Id"] == "abcdefghijkl"
    assert d.headers["X-Scopes"] == "memory:read"
    # signed for the memory service and for this request only (method, path without query)
    seen = verifier.verify(d.headers["X-Hanzo-Identity"], "GET", "/v1/memory/retrieve")
    assert seen.subject == "acme/alice" and seen.organization == "acme"


async def test_hot_key_costs_no_sidecar_call_and_reuses_assertion(core, sidecar) -> None:
    sidecar.keys[KEY] = principal()
    first = await core.decide(req())
    for _ in range(50):
        again = await core.decide(req())
        assert again.status == 200
    assert sidecar.calls == 1
    assert again.headers["X-Hanzo-Identity"] == first.headers["X-Hanzo-Identity"]


class CountingSigner(AssertionSigner):
    """The real signer, counting what it signs: (audience, method, path) per signature."""

    def __init__(self, private_pem: bytes) -> None:
        super().__init__(private_pem, 60)
        self.signed: list[tuple[object, object, object]] = []

    def sign(self, principal: Principal, request_id: str | None = None, **kw: Any) -> str:
        self.signed.append((kw.get("audience"), kw.get("method"), kw.get("path")))
        return super().sign(principal, request_id, **kw)


async def test_a_hot_key_signs_once_per_route_and_again_after_half_the_assertion_life(
    sidecar, assertion_keys, tmp_path, clock: FakeClock, verifier: AssertionVerifier
) -> None:
    """Signing is the costliest step of an allow: one signature serves a hot key on one
    route (audience, method, path) for half the assertion's life, never another route's
    request, and never outlives the principal's cache entry (revocation bound)."""
    signer = CountingSigner(assertion_keys[0].read_bytes())
    core = DecisionCore(
        routes=RouteTable.from_yaml(ROUTES),
        keys=sidecar,
        resolver=sidecar,
        limiter=MemoryLimiter(None, clock=clock),
        signer=signer,
        assertion_ttl=60,
        positive_cache_max=3600,
        clock=clock,
    )
    sidecar.keys[KEY] = principal(scopes=frozenset({"memory:read", "memory:delete"}))
    sidecar.ttl = 3600  # the principal outlives the assertion here
    try:
        first = await core.decide(req(uri="/v1/memory/retrieve?q=1"))
        for query in ("?q=2", "", "?q=3"):  # the query is not part of the binding
            again = await core.decide(req(uri="/v1/memory/retrieve" + query))
            assert again.headers == first.headers
        assert len(signer.signed) == 1
        deleted = await core.decide(req("DELETE", "/v1/memory/m1"))
        other = await core.decide(req("DELETE", "/v1/memory/m2"))
        assert signer.signed[1:] == [
            ("hanzo-memory", "DELETE", "/v1/memory/m1"),
            ("hanzo-memory", "DELETE", "/v1/memory/m2"),
        ]
        token = deleted.headers["X-Hanzo-Identity"]
        verifier.verify(token, "DELETE", "/v1/memory/m1")
        with pytest.raises(InvalidAssertion):  # never handed to another path's request
            verifier.verify(token, "DELETE", "/v1/memory/m2")
        assert other.headers["X-Hanzo-Identity"] != token
        clock.advance(29.9)
        await core.decide(req())
        assert len(signer.signed) == 3
        clock.advance(0.1)  # half of 60 s: re-signed, so an upstream gets >= 30 s of life
        renewed = await core.decide(req())
        assert len(signer.signed) == 4 and signer.signed[-1][2] == "/v1/memory/retrieve"
        verifier.verify(renewed.headers["X-Hanzo-Identity"], "GET", "/v1/memory/retrieve")
    finally:
        await core.aclose()


async def test_a_new_principal_entry_signs_anew(core, sidecar, clock: FakeClock) -> None:
    """A role change reaches the assertion with the principal's cache entry (5 s), not
    after the assertion's own re-signing time."""
    sidecar.keys[KEY] = principal()
    before = await core.decide(req())
    sidecar.keys[KEY] = principal(roles=("member", "analyst"))
    clock.advance(5.0)
    after = await core.decide(req())
    assert after.headers["X-Roles"] == "member,analyst"
    assert after.headers["X-Hanzo-Identity"] != before.headers["X-Hanzo-Identity"]


async def test_missing_credential_is_401(core) -> None:
    d = await core.decide(AuthRequest("GET", "/v1/memory/retrieve", {}))
    assert d.status == 401 and d.code == "missing_credential"
    assert "WWW-Authenticate" in d.headers
    assert json.loads(d.body_bytes())["error"]["code"] == "missing_credential"


async def test_unknown_key_is_401_and_negatively_cached(core, sidecar) -> None:
    for _ in range(5):
        d = await core.decide(req())
        assert d.status == 401 and d.code == "invalid_key"
    assert sidecar.calls == 1


async def test_x_api_key_header_is_accepted(core, sidecar) -> None:
    sidecar.keys[KEY] = principal()
    d = await core.decide(AuthRequest("GET", "/v1/memory/retrieve", {"x-api-key": KEY}))
    assert d.status == 200


async def test_missing_permission_is_403(core, sidecar) -> None:
    sidecar.keys[KEY] = principal()
    d = await core.decide(req("POST", "/v1/memory/store"))
    assert d.status == 403 and d.code == "forbidden"
    assert "memory:write" in d.message


async def test_unknown_route_is_denied_by_default(core, sidecar) -> None:
    sidecar.keys[KEY] = principal(scopes=frozenset({"memory:read", "admin:all"}))
    d = await core.decide(req("GET", "/v1/admin/everything"))
    assert d.status == 403 and d.code == "route_not_allowed"


async def test_unknown_route_without_credential_is_401(core) -> None:
    d = await core.decide(AuthRequest("GET", "/nowhere", {}))
    assert d.status == 401


@pytest.mark.parametrize(
    "uri",
    [
        "/v1/memory/../keys",
        "/v1/memory/%2e%2e/x",
        "/v1/files/a%2Fb",
        "//v1/memory",
        "//x/v1/memory/retrieve?q=1",
        "x",
    ],
)
async def test_ambiguous_paths_are_400(core, sidecar, uri: str) -> None:
    sidecar.keys[KEY] = principal()
    d = await core.decide(req("GET", uri))
    assert d.status == 400 and d.code == "invalid_path"


async def test_absolute_form_uri_is_judged_on_its_path(core, sidecar) -> None:
    sidecar.keys[KEY] = principal()
    d = await core.decide(req("GET", "http://api.example/v1/memory/retrieve?q=1"))
    assert d.status == 200


async def test_public_route_sets_every_identity_header_empty(core, sidecar) -> None:
    d = await core.decide(AuthRequest("GET", "/healthz", {"x-user-id": "acme/admin"}))
    assert d.status == 200
    assert d.headers == dict.fromkeys(IDENTITY_HEADERS, "")
    assert sidecar.calls == 0


async def test_rate_limit_is_429_with_retry_after(core, sidecar) -> None:
    sidecar.keys[KEY] = principal(limits=Limits(requests_per_minute=3))
    statuses = [(await core.decide(req())).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    d = await core.decide(req())
    assert d.status == 429 and d.code == "rate_limited"
    assert 1 <= int(d.headers["Retry-After"]) <= 60
    assert d.headers["RateLimit-Limit"] == "3"
    assert d.headers["RateLimit-Remaining"] == "0"


async def test_limits_are_per_key(core, sidecar) -> None:
    sidecar.keys[KEY] = principal(limits=Limits(requests_per_minute=1))
    sidecar.keys[OTHER] = principal(key_id="zzzzzzzzzzzz", limits=Limits(requests_per_minute=1))
    assert (await core.decide(req())).status == 200
    assert (await core.decide(req())).status == 429
    other = AuthRequest("GET", "/v1/memory/retrieve", {"authorization": f"Bearer {OTHER}"})
    assert (await core.decide(other)).status == 200


async def test_a_new_principal_entry_is_limited_at_its_new_limits(
    core, sidecar, clock: FakeClock
) -> None:
    """The buckets and limits a principal is counted by are worked out once per cached
    entry (``DecisionCore._plan``): a plan change (limits set, then raised) takes effect
    with the next entry, as the key itself does, never later."""
    sidecar.keys[KEY] = principal()  # no limits at all
    unlimited = await core.decide(req())
    assert unlimited.status == 200 and "RateLimit-Limit" not in unlimited.client_headers
    sidecar.keys[KEY] = principal(limits=Limits(requests_per_minute=1))
    clock.advance(5.0)  # the cache bound: the next request asks the sidecar again
    assert (await core.decide(req())).status == 200
    assert (await core.decide(req())).status == 429
    sidecar.keys[KEY] = principal(limits=Limits(requests_per_minute=3))
    clock.advance(5.0)
    allowed = await core.decide(req())
    assert allowed.status == 200 and allowed.client_headers["RateLimit-Limit"] == "3"
    assert (await core.decide(req())).status == 200
    assert (await core.decide(req())).status == 429  # 3 in this minute, counted across
    assert sidecar.calls == 3


async def test_daily_quota_is_429_quota_exceeded(core, sidecar) -> None:
    sidecar.keys[KEY] = principal(limits=Limits(units_per_day=2, requests_per_minute=100))
    assert [(await core.decide(req())).status for _ in range(2)] == [200, 200]
    d = await core.decide(req())
    assert d.status == 429 and d.code == "quota_exceeded"
    assert int(d.headers["Retry-After"]) <= 86400


async def test_sidecar_down_is_503_not_cached(core, sidecar) -> None:
    sidecar.keys[KEY] = principal()
    sidecar.down = True
    d = await core.decide(req())
    assert d.status == 503 and d.code == "auth_unavailable"
    sidecar.down = False
    assert (await core.decide(req())).status == 200


async def test_jwt_without_casdoor_configured_is_401(core) -> None:
    d = await core.decide(req(authorization="Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"))
    assert d.status == 401 and d.code == "invalid_token"


async def test_error_body_never_contains_the_key(core, sidecar) -> None:
    d = await core.decide(req())
    assert KEY not in d.body_bytes().decode()
    assert all(KEY not in v for v in d.headers.values())


async def test_a_revoked_key_passes_until_the_cache_bound_then_is_refused(
    core, sidecar, clock: FakeClock
) -> None:
    sidecar.keys[KEY] = principal()
    assert (await core.decide(req())).status == 200  # cached for min(ttl, max) = 5 s
    del sidecar.keys[KEY]  # revoked at the sidecar
    clock.advance(4.9)
    assert (await core.decide(req())).status == 200
    assert sidecar.calls == 1
    clock.advance(0.1)  # the bound
    d = await core.decide(req())
    assert d.status == 401 and d.code == "invalid_key"
    assert sidecar.calls == 2


async def test_a_refused_key_is_asked_again_after_the_negative_ttl(
    core, sidecar, clock: FakeClock
) -> None:
    assert (await core.decide(req())).status == 401
    sidecar.keys[KEY] = principal()  # created after the refusal
    clock.advance(0.9)
    assert (await core.decide(req())).status == 401  # still the cached refusal
    clock.advance(0.1)
    assert (await core.decide(req())).status == 200
    assert sidecar.calls == 2


async def test_the_key_cache_is_bounded_and_never_serves_an_expired_entry(
    alice: Principal,
) -> None:
    """Size 2: a third key pushes out the oldest stored (asked again next time); an entry
    read past its lifetime is asked again and dropped, never served."""
    clock = FakeClock()
    cache = PrincipalCache("key", max_ttl=5.0, negative_ttl=0.0, size=2, clock=clock)
    asked: list[str] = []

    def fetch(name: str) -> Any:
        async def answer() -> VerifyResponse:
            asked.append(name)
            return VerifyResponse(principal=alice, cache_ttl_seconds=60)

        return answer

    for name in ("a", "b", "a", "c", "b", "a"):
        await cache.get(name, fetch(name))
    # a, b stored; a hit; c pushes out a (the oldest stored); b hit; a asked again
    assert asked == ["a", "b", "c", "a"]
    clock.advance(5.0)  # max_ttl: every entry's lifetime is over
    await cache.get("a", fetch("a"))
    assert asked[-1] == "a" and len(asked) == 5


async def test_a_cached_answer_lives_its_ttl_from_the_question_not_the_answer(
    alice: Principal,
) -> None:
    """The sidecar took 2 s to answer: its answer may predate a revocation made during
    those 2 s, so it is served until 5 s after the question, never 5 s after the answer."""
    clock = FakeClock()
    cache = PrincipalCache("key", max_ttl=5.0, negative_ttl=0.0, size=8, clock=clock)
    asked = 0

    async def slow() -> VerifyResponse:
        nonlocal asked
        asked += 1
        clock.advance(2.0)  # the round trip
        return VerifyResponse(principal=alice, cache_ttl_seconds=60)

    await cache.get("k", slow)  # asked at 0, answered at 2
    clock.advance(2.9)  # 4.9 s after the question
    await cache.get("k", slow)
    assert asked == 1
    clock.advance(0.2)  # 5.1 s after the question, 3.1 s after the answer
    await cache.get("k", slow)
    assert asked == 2

"""An identity assertion is good for one receiver and one request, nothing else.

Captured from one request (in transit or from a log), it is refused on another method or
path of the memory service, and an assertion addressed to another upstream (the sidecar, or
no audience) is refused here, even though each is genuinely signed by the gateway key.
"""

from __future__ import annotations

import pytest

from hanzo_contract.assertion import (
    AUDIENCE,
    MEMORY_AUDIENCE,
    SIDECAR_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    InvalidAssertion,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from tests.memory.conftest import Caller
from tests.memory.test_bad_input import err

S = "/v1/memory"


async def test_assertion_replayed_elsewhere_is_refused(client, make_caller, signer):
    me = make_caller()
    stored = await client.post(f"{S}/store", headers=me.headers, json={"content": "bound"})
    mid = stored.json()["ids"][0]
    for_list = me.sign_for("GET", f"{S}/retrieve")
    ok = await client.get(f"{S}/retrieve", headers={ASSERTION: for_list})
    assert ok.status_code == 200 and ok.json()["memories"][0]["id"] == mid
    # the same assertion on another path, another method, or the same path with a new id
    err(await client.get(f"{S}/export", headers={ASSERTION: for_list}), 401, "invalid_assertion")
    err(await client.post(f"{S}/search", headers={ASSERTION: for_list}, json={"query": "b"}),
        401, "invalid_assertion")  # fmt: skip
    for_delete = me.sign_for("DELETE", f"{S}/other-id")
    err(await client.delete(f"{S}/{mid}", headers={ASSERTION: for_delete}), 401,
        "invalid_assertion")  # fmt: skip
    err(await client.patch(f"{S}/other-id", headers={ASSERTION: for_delete}, json={}), 401,
        "invalid_assertion")  # fmt: skip
    # genuine assertions for other receivers, or bound to nothing
    for audience in (SIDECAR_AUDIENCE, AUDIENCE):
        other = signer.sign(me.principal, audience=audience, method="GET", path=f"{S}/retrieve")
        err(await client.get(f"{S}/retrieve", headers={ASSERTION: other}), 401,
            "invalid_assertion")  # fmt: skip
    unbound = signer.sign(me.principal, audience=MEMORY_AUDIENCE)
    err(await client.get(f"{S}/retrieve", headers={ASSERTION: unbound}), 401, "invalid_assertion")
    # and the memory is still there: none of the replays did anything
    assert (await client.get(f"{S}/retrieve", headers=me.headers)).json()["memories"]


def test_verifier_checks_audience_method_and_path():
    private, public = generate_keypair()
    signer = AssertionSigner(private)
    who = Caller(signer, "acme", "alice").principal
    verifier = AssertionVerifier(public, audience=MEMORY_AUDIENCE)
    token = signer.sign(who, audience=MEMORY_AUDIENCE, method="get", path="/v1/memory/x")
    assert verifier.verify(token, "GET", "/v1/memory/x") == who
    for method, path in (("POST", "/v1/memory/x"), ("GET", "/v1/memory/y"), ("GET", None)):
        with pytest.raises(InvalidAssertion):
            verifier.verify(token, method, path)
    with pytest.raises(InvalidAssertion):
        AssertionVerifier(public, audience=SIDECAR_AUDIENCE).verify(token)

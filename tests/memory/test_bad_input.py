"""Bad input and bad identity get precise 4xx JSON errors, never a 500 or a silent drop."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from hanzo_contract.assertion import AssertionSigner, generate_keypair
from hanzo_contract.headers import ASSERTION, ORG_ID, USER_ID
from hanzo_contract.principal import Principal
from tests.memory.conftest import Caller

S = "/v1/memory"


def err(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture
def me(make_caller) -> Caller:
    return make_caller()


async def post(client: httpx.AsyncClient, path: str, who: Caller, **kw) -> httpx.Response:
    return await client.post(f"{S}/{path}", headers={**who.headers, **kw.pop("headers", {})}, **kw)


async def test_malformed_json(client, me):
    r = await post(client, "store", me, content=b'{"content": "x",')
    assert "not valid JSON" in err(r, 400, "malformed_json")["message"]
    err(await post(client, "search", me, content=b"\xff\xfe"), 400, "malformed_json")
    err(await post(client, "store", me, content=b""), 400, "empty_body")


async def test_wrong_types_and_unknown_fields(client, me):
    e = err(await post(client, "store", me, json={"content": 42}), 422, "validation_error")
    assert e["details"][0]["loc"] == ["content"]
    e = err(await post(client, "store", me, json={"content": "x", "tags": "a"}), 422,
            "validation_error")  # fmt: skip
    assert e["details"][0]["loc"] == ["tags"]
    err(await post(client, "store", me, json={"content": "x", "owner": "evil"}), 422,
        "validation_error")  # fmt: skip
    err(await post(client, "store", me, json=["x"]), 422, "validation_error")
    err(await post(client, "store", me, json={"memories": []}), 422, "validation_error")
    err(await post(client, "search", me, json={"query": "x", "top_k": "many"}), 422,
        "validation_error")  # fmt: skip
    err(await post(client, "search", me, json={"query": "x", "mode": "psychic"}), 422,
        "validation_error")  # fmt: skip
    e = err(await post(client, "search", me, json={"query": "x", "top_k": 101}), 422,
            "top_k_too_large")  # fmt: skip
    assert "100" in e["message"]
    err(await post(client, "store", me, json={"content": "x", "id": "bad id!"}), 422,
        "validation_error")  # fmt: skip
    past = {"content": "x", "expires_at": "2001-01-01T00:00:00Z"}
    err(await post(client, "store", me, json=past), 422, "invalid_expiry")


async def test_empty_content(client, me):
    for content in ("", "   \n\t"):
        e = err(await post(client, "store", me, json={"content": content}), 422,
                "validation_error")  # fmt: skip
        assert e["details"][0]["loc"] == ["content"]
    err(await post(client, "search", me, json={"query": " "}), 422, "validation_error")


async def test_oversized_body_is_refused_before_parsing(client, me):
    big = b'{"content": "' + b"a" * 1_100_000 + b'"}'
    e = err(await post(client, "store", me, content=big), 413, "body_too_large")
    assert "1048576" in e["message"]

    async def chunks():  # no Content-Length: the limit is counted as bytes stream in
        for _ in range(40):
            yield b"x" * 50_000

    err(await post(client, "store", me, content=chunks()), 413, "body_too_large")
    lying = await post(client, "store", me, content=b"{}", headers={"content-length": "abc"})
    assert lying.status_code == 400


async def test_unknown_id_and_bad_cursor(client, me):
    err(await client.get(f"{S}/retrieve", params={"id": "nope"}, headers=me.headers), 404,
        "not_found")  # fmt: skip
    err(await client.delete(f"{S}/nope", headers=me.headers), 404, "not_found")
    err(await client.patch(f"{S}/nope", json={"content": "x"}, headers=me.headers), 404,
        "not_found")  # fmt: skip
    for cursor in ("garbage", "eyJ4IjoxfQ", "WzEsMl0"):
        r = await client.get(f"{S}/retrieve", params={"cursor": cursor}, headers=me.headers)
        err(r, 400, "invalid_cursor")
    r = await client.get(f"{S}/retrieve", params={"limit": 0}, headers=me.headers)
    err(r, 422, "validation_error")
    r = await client.get(f"{S}/retrieve", params={"metadata": "{bad"}, headers=me.headers)
    err(r, 400, "malformed_json")
    r = await client.get(f"{S}/retrieve", params={"colour": "red"}, headers=me.headers)
    err(r, 422, "validation_error")


async def test_dimension_mismatch(client, me):
    e = err(await post(client, "store", me, json={"content": "x", "embedding": [0.1] * 10}), 422,
            "dimension_mismatch")  # fmt: skip
    assert e["details"] == {"expected": 384, "got": 10}
    err(await post(client, "search", me, json={"query": "x", "mode": "vector",
                                                "embedding": [0.5] * 385}),
        422, "dimension_mismatch")  # fmt: skip
    err(await post(client, "store", me, json={"content": "x", "embedding": [0.0] * 384}), 422,
        "invalid_embedding")  # fmt: skip
    # Nothing was stored by the refused requests.
    r = await client.get(f"{S}/retrieve", headers=me.headers)
    assert r.json()["memories"] == []
    # The right dimension is accepted and is what vector search uses.
    vec = [0.0] * 384
    vec[7] = 1.0
    ok = await post(client, "store", me, json={"content": "client vector", "embedding": vec})
    assert ok.status_code == 200
    hits = (await post(client, "search", me, json={"query": "q", "mode": "vector",
                                                    "embedding": vec})).json()  # fmt: skip
    assert hits["results"][0]["memory"]["content"] == "client vector"
    assert hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


async def test_identity_is_required_and_verified(client, me):
    body = {"content": "x"}
    err(await client.post(f"{S}/store", json=body), 401, "unauthenticated")
    # Bare identity headers are ignored: they are not an assertion.
    bare = {USER_ID: f"{me.org}/alice", ORG_ID: me.org}
    err(await client.post(f"{S}/store", json=body, headers=bare), 401, "unauthenticated")
    forged = AssertionSigner(generate_keypair()[0]).sign(me.principal)
    e = err(await client.post(f"{S}/store", json=body, headers={ASSERTION: forged}), 401,
            "invalid_assertion")  # fmt: skip
    assert forged not in e["message"]
    err(await client.post(f"{S}/store", json=body, headers={ASSERTION: "not.a.jwt"}), 401,
        "invalid_assertion")  # fmt: skip
    err(await client.get(f"{S}/capabilities", headers={ASSERTION: ""}), 401, "unauthenticated")


async def test_expired_and_wrong_audience_assertions(client, keypair, me):
    key = keypair[0]
    now = int(time.time())
    base = {"iss": "hanzo-gateway", "aud": "hanzo-upstream", "sub": f"{me.org}/alice",
            "org": me.org, "scp": ["memory:read"]}  # fmt: skip
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key, password=None)
    expired = jwt.encode({**base, "iat": now - 600, "exp": now - 300}, private, algorithm="EdDSA")
    wrong_aud = jwt.encode({**base, "aud": "someone-else", "iat": now, "exp": now + 60}, private,
                           algorithm="EdDSA")  # fmt: skip
    for token in (expired, wrong_aud):
        r = await client.get(f"{S}/retrieve", headers={ASSERTION: token})
        err(r, 401, "invalid_assertion")


async def test_permissions_per_route(client, make_caller):
    reader = make_caller(perms=("memory:read",))
    writer = make_caller(org=reader.org, user=reader.user, perms=("memory:write",))
    nobody = make_caller(org=reader.org, user=reader.user, perms=())
    r = await client.post(f"{S}/store", json={"content": "perm test"}, headers=writer.headers)
    assert r.status_code == 200
    mid = r.json()["ids"][0]
    e = err(await client.post(f"{S}/store", json={"content": "y"}, headers=reader.headers), 403,
            "forbidden")  # fmt: skip
    assert "memory:write" in e["message"]
    err(await client.delete(f"{S}/{mid}", headers=writer.headers), 403, "forbidden")
    err(await client.get(f"{S}/retrieve", headers=writer.headers), 403, "forbidden")
    err(await client.post(f"{S}/search", json={"query": "x"}, headers=nobody.headers), 403,
        "forbidden")  # fmt: skip
    err(await client.get(f"{S}/export", headers=writer.headers), 403, "forbidden")
    err(await client.post(f"{S}/import", content=b"", headers=reader.headers), 403, "forbidden")
    assert (
        await client.get(f"{S}/retrieve", params={"id": mid}, headers=reader.headers)
    ).status_code == 200


async def test_unknown_routes_and_methods_are_json(client, me):
    err(await client.get("/v1/nothing", headers=me.headers), 404, "not_found")
    err(await client.put(f"{S}/store", headers=me.headers), 405, "method_not_allowed")


async def test_bad_import_lines(client, me):
    r = await client.post(f"{S}/import", content=b'{"content": "ok"}\n{oops\n', headers=me.headers)
    assert "line 2" in err(r, 400, "malformed_json")["message"]
    r = await client.post(f"{S}/import", content=b'{"content": "ok"}\n{"content": 5}\n',
                          headers=me.headers)  # fmt: skip
    assert err(r, 422, "validation_error")["details"][0]["loc"] == ["line", 2, "content"]
    # A refused file stores nothing.
    assert (await client.get(f"{S}/retrieve", headers=me.headers)).json()["memories"] == []


async def test_openapi_document(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = {"store", "search", "retrieve", "{id}", "capabilities", "export", "import"}
    assert {f"/v1/memory/{p}" for p in paths} <= set(doc["paths"])
    assert "StoreRequest" in doc["components"]["schemas"]
    assert doc["paths"]["/v1/memory/{id}"]["delete"]["x-permission"] == "memory:delete"


def test_principal_user_is_the_subject_name():
    p = Principal(organization="acme", subject="acme/bob")
    assert p.user == "bob"

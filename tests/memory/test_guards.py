"""Guards whose removal no other test noticed: each fails when its line is broken."""

from __future__ import annotations

S = "/v1/memory"


async def test_delete_of_own_id_leaves_other_tenants_same_id(client, make_caller):
    """Tenant B deleting its memory ``same`` must not delete tenant A's ``same``: the
    backend's delete is filtered by tenant, not only the service's lookup before it."""
    a, b = make_caller(), make_caller()
    for who, text in ((a, "alpha's note"), (b, "beta's note")):
        r = await client.post(f"{S}/store", headers=who.headers,
                              json={"id": "same", "content": text})  # fmt: skip
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "created", r.text
    gone = await client.delete(f"{S}/same", headers=b.headers)
    assert gone.status_code == 200, gone.text
    kept = await client.get(f"{S}/retrieve", params={"id": "same"}, headers=a.headers)
    assert kept.status_code == 200, kept.text
    assert kept.json()["memories"][0]["content"] == "alpha's note"
    found = await client.post(f"{S}/search", headers=a.headers,
                              json={"query": "alpha's note", "mode": "keyword"})  # fmt: skip
    assert [h["memory"]["id"] for h in found.json()["results"]] == ["same"]
    b_view = await client.get(f"{S}/retrieve", params={"id": "same"}, headers=b.headers)
    assert b_view.status_code == 404

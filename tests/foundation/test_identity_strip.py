"""The one strip-and-set of identity headers removes every spelling a client may use."""

from __future__ import annotations

from hanzo_contract.headers import (
    IDENTITY_HEADERS,
    identity_header_values,
    replace_identity_headers,
    replace_identity_headers_raw,
)
from hanzo_contract.principal import Principal

ALICE = Principal(organization="acme", subject="acme/alice", scopes=frozenset({"memory:read"}))


def spellings(name: str) -> list[str]:
    return [name, name.lower(), name.upper(), name.replace("-", "_"),
            name.lower().replace("-", "_"), name.upper().replace("-", "_")]  # fmt: skip


def test_every_spelling_is_stripped_in_both_forms():
    forged = [(s, "forged") for name in IDENTITY_HEADERS for s in spellings(name)]
    sent = [*forged, ("Accept", "application/json"), ("X-Request-Id", "r1")]
    out = replace_identity_headers(sent, ALICE, "assertion")
    assert ("Accept", "application/json") in out and ("X-Request-Id", "r1") in out
    assert all(v != "forged" for _, v in out), [k for k, v in out if v == "forged"]
    assert dict(out)["X-Org-Id"] == "acme"
    raw = [(k.encode(), v.encode()) for k, v in sent]
    out_raw = replace_identity_headers_raw(raw, identity_header_values(ALICE, "assertion"))
    assert all(v != b"forged" for _, v in out_raw)
    assert (b"x-org-id", b"acme") in out_raw and (b"accept", b"application/json") in [
        (k.lower(), v) for k, v in out_raw
    ]

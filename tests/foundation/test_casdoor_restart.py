"""A Casdoor restarted on the same state dir keeps its secrets and signing key."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.casdoor.errors import CasdoorUnavailable
from tests.support.casdoor_admin import admin_client


async def test_restart_keeps_client_secret_and_signing_key(tmp_path: Path) -> None:
    first = CasdoorServer(tmp_path).start()
    try:
        secret_before = first.client_secret
        async with admin_client(first) as client:
            token = (await client.client_credentials_token())["access_token"]
    finally:
        first.stop()

    # stopped: a clear connection error after bounded retries, not a hang
    async with admin_client(first, timeout=1.0, retries=2) as client:
        with pytest.raises(CasdoorUnavailable):
            await client.get_organization("hanzo")

    second = CasdoorServer(tmp_path).start()
    try:
        assert second.url == first.url  # same port, so the same issuer
        assert second.client_secret == secret_before
        async with admin_client(second) as client:
            jwks = await client.jwks()
            fresh = await client.client_credentials_token()  # the old secret still works
        key = jwt.PyJWKSet.from_dict(jwks)["cert-hanzo"]
        claims = jwt.decode(
            token, key.key, algorithms=["RS256"], audience=second.client_id, issuer=second.url
        )
        assert claims["sub"] == "admin/hanzo-sidecar"
        assert fresh["access_token"] != token
    finally:
        second.stop()

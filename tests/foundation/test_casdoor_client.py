"""Our async Casdoor client against the real Casdoor."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import jwt
import pytest

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.process import free_port
from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.casdoor.errors import CasdoorAuthError, CasdoorError, CasdoorUnavailable
from tests.support.casdoor_admin import admin_client


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_create_organization_role_and_user_then_read_them_back(
    casdoor: CasdoorServer,
) -> None:
    org, role, user = _unique("org"), _unique("role"), _unique("user")
    async with admin_client(casdoor) as client:
        await client.add_object(
            "organization",
            {"owner": "admin", "name": org, "displayName": "Acme", "passwordType": "bcrypt"},
        )
        # Casdoor refuses users in an organization that has no application yet
        await client.add_object(
            "application",
            {
                "owner": "admin",
                "name": f"{org}-app",
                "organization": org,
                "cert": "cert-hanzo",
                "tokenFormat": "JWT-Empty",
                "grantTypes": ["password"],
                "redirectUris": [],
            },
        )
        await client.add_object(
            "user",
            {
                "owner": org,
                "name": user,
                "displayName": "Bob",
                "password": "s3cret-pass",
                "email": f"{user}@example.test",
                "type": "normal-user",
            },
        )
        await client.add_object(
            "role",
            {
                "owner": org,
                "name": role,
                "displayName": "Readers",
                "isEnabled": True,
                "users": [f"{org}/{user}"],
                "roles": [],
                "domains": [],
            },
        )

        got_org = await client.get_organization(org)
        got_user = await client.get_user(org, user)
        got_role = await client.get_role(org, role)

    assert got_org is not None and got_org["name"] == org and got_org["displayName"] == "Acme"
    assert got_user is not None and got_user["owner"] == org
    assert got_user["email"] == f"{user}@example.test"
    assert got_user["password"] != "s3cret-pass"  # Casdoor never hands the password back
    assert got_role is not None and got_role["users"] == [f"{org}/{user}"]


async def test_missing_object_reads_as_none(casdoor: CasdoorServer) -> None:
    async with admin_client(casdoor) as client:
        assert await client.get_role(casdoor.organization, _unique("absent")) is None
        assert await client.get_organization(_unique("absent")) is None


async def test_client_credentials_token_verifies_against_casdoor_jwks(
    casdoor: CasdoorServer,
) -> None:
    async with admin_client(casdoor) as client:
        token = (await client.client_credentials_token())["access_token"]
        jwks = await client.jwks()

    kid = jwt.get_unverified_header(token)["kid"]
    assert kid == "cert-hanzo"  # signed with our own cert, not Casdoor's built-in one
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=casdoor.client_id, issuer=casdoor.url
    )
    assert claims["sub"] == "admin/hanzo-sidecar"
    assert claims["azp"] == casdoor.client_id
    # JWT-Empty format: no user secrets or profile fields in the token
    assert "password" not in claims and "accessSecret" not in claims

    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, key.key, algorithms=["RS256"], audience=casdoor.client_id)


async def test_casdoor_error_reply_becomes_typed_exception_with_its_message(
    casdoor: CasdoorServer,
) -> None:
    async with admin_client(casdoor) as client:
        with pytest.raises(CasdoorError) as excinfo:
            await client.add_object("organization", {"owner": "admin", "name": "hanzo"})
    assert "UNIQUE constraint failed" in excinfo.value.message
    assert excinfo.value.action == "add-organization"


async def test_wrong_client_secret_is_an_auth_error_without_the_secret(
    casdoor: CasdoorServer,
) -> None:
    wrong = "not-the-secret-" + uuid.uuid4().hex
    async with CasdoorClient(casdoor.url, casdoor.client_id, wrong) as client:
        with pytest.raises(CasdoorAuthError) as excinfo:
            await client.add_object("organization", {"owner": "admin", "name": _unique("o")})
    assert wrong not in str(excinfo.value)


async def test_unreachable_casdoor_fails_fast_after_bounded_retries() -> None:
    port = free_port()  # nothing listens here
    calls: list[float] = []

    async def count(request: httpx.Request) -> None:
        calls.append(time.monotonic())

    client = CasdoorClient(f"http://127.0.0.1:{port}", "id", "secret", timeout=1.0, retries=3)
    client._http.event_hooks["request"].append(count)
    started = time.monotonic()
    async with client:
        with pytest.raises(CasdoorUnavailable) as excinfo:
            await client.get_organization("hanzo")
    assert len(calls) == 3  # bounded: exactly the configured attempts
    assert time.monotonic() - started < 10  # and no hang
    assert "3 attempts" in str(excinfo.value)
    assert excinfo.value.status_code == 503


class FailingCasdoor:
    """A loopback HTTP server that answers every request 502, and counts them: a Casdoor
    whose proxy fails after the request was received (it may have been applied)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.split(b" ", 1)[0].decode())
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":", 1)[1]))
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def test_a_write_that_reached_casdoor_is_never_sent_again() -> None:
    """A read is retried after a 5xx; a write is not (an ``add-`` that was applied before
    the failure, sent again, answered "already exists" and failed the apply)."""
    casdoor = FailingCasdoor()
    port = await casdoor.start()
    try:
        async with CasdoorClient(f"http://127.0.0.1:{port}", "id", "secret", retries=3) as client:
            with pytest.raises(CasdoorUnavailable) as write:
                await client.add_object("organization", {"owner": "admin", "name": "o"})
            assert casdoor.requests == ["POST"] and "not sent again" in str(write.value)
            casdoor.requests.clear()
            with pytest.raises(CasdoorUnavailable):
                await client.get_organization("hanzo")
            assert casdoor.requests == ["GET"] * 3
    finally:
        await casdoor.stop()

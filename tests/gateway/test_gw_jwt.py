"""Casdoor JWTs against the real Casdoor: through nginx and Caddy, and in the verifier."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway_plugins.core import DecisionCore
from gateway_plugins.jwt.verifier import InvalidToken, JwtVerifier
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.request import AuthRequest
from gateway_plugins.routes import RouteTable
from hanzo_contract.assertion import AssertionSigner
from hanzo_contract.principal import Principal, PrincipalKind
from hanzo_contract.signin import ORG_CLI_APPLICATION, org_cli_application
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.servers import CaddyServer, ForwardAuthServer, NginxServer, SidecarServer
from tests.support.casdoor_admin import admin_client, sidecar_casdoor_env
from tests.support.clock import FakeClock

KID = "cert-hanzo"


@dataclass
class Tenant:
    organization: str
    user: str
    password: str
    client_id: str
    client_secret: str


@pytest.fixture(scope="module")
async def tenant(casdoor: CasdoorServer) -> Tenant:
    """An organization with an app (password grant, JWT-Empty), a user, a role granting
    the managed permission memory:read."""
    suffix = uuid.uuid4().hex[:8]
    org, user, role, password = f"gwt-{suffix}", "jwtuser", "reader", "Pa55-" + suffix
    async with admin_client(casdoor) as client:
        await client.add_object(
            "organization",
            {"owner": "admin", "name": org, "displayName": org, "passwordType": "bcrypt"},
        )
        await client.add_object(
            "application",
            {
                "owner": "admin",
                "name": f"{org}-app",
                "organization": org,
                "cert": KID,
                "tokenFormat": "JWT-Empty",
                "grantTypes": ["password"],
                "redirectUris": [],
                "expireInHours": 1,
            },
        )
        await client.add_object(
            "user",
            {
                "owner": org,
                "name": user,
                "displayName": user,
                "password": password,
                "email": f"{user}@example.test",
                "type": "normal-user",
            },
        )
        await client.add_object(
            "role",
            {
                "owner": org,
                "name": role,
                "displayName": role,
                "isEnabled": True,
                "users": [f"{org}/{user}"],
                "roles": [],
                "domains": [],
            },
        )
        await client.add_object(
            "permission",
            {
                "owner": org,
                "name": "memory-read",
                "displayName": "memory:read",
                "description": "[hanzo-managed] memory:read",
                "users": [],
                "groups": [],
                "roles": [f"{org}/{role}"],
                "domains": [],
                "model": "",
                "adapter": "",
                "resourceType": "Custom",
                "resources": ["memory"],
                "actions": ["read"],
                "effect": "Allow",
                "isEnabled": True,
            },
        )
        app = await client.get_object("application", "admin", f"{org}-app")
    assert app is not None
    return Tenant(org, user, password, app["clientId"], app["clientSecret"])


@dataclass
class JwtStack:
    nginx: NginxServer
    caddy: CaddyServer


@pytest.fixture(scope="module")
def jwt_stack(
    casdoor: CasdoorServer,
    tenant: Tenant,
    stack,
    make_gateway_env,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JwtStack]:
    work = tmp_path_factory.mktemp("gw-jwt")
    started: list[Any] = []
    try:
        sidecar = SidecarServer(
            work / "sidecar",
            env=sidecar_casdoor_env(casdoor),
        ).start()
        started.append(sidecar)
        env = make_gateway_env(
            sidecar,
            work,
            HANZO_GATEWAY_CASDOOR_URL=casdoor.url,
            HANZO_GATEWAY_JWT_AUDIENCES=f'["{tenant.client_id}"]',
        )
        auth = ForwardAuthServer(work, env).start()
        started.append(auth)
        nginx = NginxServer(work / "nginx", auth.addr, stack.upstream.addr).start()
        started.append(nginx)
        caddy = CaddyServer(work / "caddy", auth.addr, stack.upstream.addr).start()
        started.append(caddy)
        yield JwtStack(nginx, caddy)
    finally:
        for server in reversed(started):
            server.stop()


async def user_token(casdoor: CasdoorServer, tenant: Tenant) -> str:
    async with admin_client(casdoor) as client:
        answer = await client.password_token(
            tenant.organization,
            tenant.user,
            tenant.password,
            client_id=tenant.client_id,
            client_secret=tenant.client_secret,
        )
    return answer["access_token"]


def casdoor_signed(casdoor: CasdoorServer, claims: dict[str, Any], key: Any = None) -> str:
    """A token signed with Casdoor's own cert key (or ``key``), for expiry/audience cases."""
    if key is None:
        key = serialization.load_pem_private_key(casdoor.cert_key_path.read_bytes(), None)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


def claims_for(casdoor: CasdoorServer, tenant: Tenant, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "owner": tenant.organization,
        "name": tenant.user,
        "sub": "some-user-id",
        "aud": [tenant.client_id],
        "iss": casdoor.url,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "azp": tenant.client_id,
        "tokenType": "access-token",
        "scope": "profile",
    }
    claims.update(over)
    return claims


@pytest.mark.parametrize("gateway", ["nginx", "caddy"])
async def test_casdoor_user_jwt_is_accepted_with_its_roles_scopes(
    casdoor, tenant, jwt_stack, gateway: str
) -> None:
    token = await user_token(casdoor, tenant)
    base = getattr(jwt_stack, gateway).url
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(
            base + "/v1/memory/retrieve", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        seen = {k.lower(): v for k, v in r.json()["headers"]}
        assert seen["x-user-id"] == f"{tenant.organization}/{tenant.user}"
        assert seen["x-org-id"] == tenant.organization
        assert seen["x-scopes"] == "memory:read"
        assert seen["x-roles"] == "reader"
        # the role grants read only
        r = await http.post(
            base + "/v1/memory/store", headers={"Authorization": f"Bearer {token}"}, json={}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("gateway", ["nginx", "caddy"])
async def test_expired_wrong_audience_and_forged_jwts_are_401(
    casdoor, tenant, jwt_stack, gateway: str
) -> None:
    past = int(time.time()) - 3600
    expired = casdoor_signed(casdoor, claims_for(casdoor, tenant, iat=past, nbf=past, exp=past))
    other_aud = casdoor_signed(casdoor, claims_for(casdoor, tenant, aud=["someone-else"]))
    other_iss = casdoor_signed(casdoor, claims_for(casdoor, tenant, iss="http://evil.test"))
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = casdoor_signed(casdoor, claims_for(casdoor, tenant), key=forger)
    base = getattr(jwt_stack, gateway).url + "/v1/memory/retrieve"
    async with httpx.AsyncClient(timeout=10) as http:
        cases = {"expired_token": expired, "aud": other_aud, "iss": other_iss, "sig": forged}
        for case, token in cases.items():
            r = await http.get(base, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, case
            code = r.json()["error"]["code"]
            assert code == ("expired_token" if case == "expired_token" else "invalid_token")
            assert token not in r.text


@pytest.fixture
async def casdoor_verifier(casdoor: CasdoorServer) -> AsyncIterator[JwtVerifier]:
    verifier = JwtVerifier(casdoor.url, casdoor.url, [casdoor.client_id], refresh_interval=0)
    yield verifier
    await verifier.aclose()


async def test_client_credentials_token_names_the_application(
    casdoor: CasdoorServer, casdoor_verifier: JwtVerifier
) -> None:
    async with admin_client(casdoor) as client:
        token = (await client.client_credentials_token())["access_token"]
    verified = await casdoor_verifier.verify(token)
    assert verified.resolve.kind is PrincipalKind.APPLICATION
    assert verified.resolve.client_id == casdoor.client_id


async def test_unknown_kid_is_refused_without_crashing(
    casdoor: CasdoorServer, tenant: Tenant, casdoor_verifier: JwtVerifier
) -> None:
    claims = claims_for(casdoor, tenant, aud=[casdoor.client_id])
    key = serialization.load_pem_private_key(casdoor.cert_key_path.read_bytes(), None)
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "no-such-kid"})
    with pytest.raises(InvalidToken) as info:
        await casdoor_verifier.verify(token)
    assert info.value.code == "invalid_token"


async def test_service_to_service_token_through_the_core(
    casdoor: CasdoorServer, sidecar, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Client-credentials JWT -> application principal. The resolver here is FakeSidecar
    (application scopes come from the sidecar's tenant file, not set up in this test)."""
    sidecar.principals[casdoor.client_id] = Principal(
        organization="acme",
        subject="acme/indexer",
        kind=PrincipalKind.APPLICATION,
        scopes=frozenset({"memory:read"}),
    )
    core = DecisionCore(
        routes=RouteTable.load(None),
        keys=sidecar,
        resolver=sidecar,
        jwt_verifier=JwtVerifier(casdoor.url, casdoor.url, [casdoor.client_id]),
        limiter=MemoryLimiter(None),
        signer=AssertionSigner(assertion_keys[0].read_bytes()),
        assertion_ttl=60,
    )
    try:
        async with admin_client(casdoor) as client:
            token = (await client.client_credentials_token())["access_token"]
        request = AuthRequest("GET", "/v1/memory/retrieve", {"authorization": f"Bearer {token}"})
        decision = await core.decide(request)
        assert decision.status == 200
        assert decision.headers["X-User-Id"] == "acme/indexer"
        assert decision.headers["X-Key-Id"] == ""
    finally:
        await core.aclose()


async def test_shared_application_audience_is_bound_to_the_token_owner(
    casdoor: CasdoorServer, tenant: Tenant
) -> None:
    verifier = JwtVerifier(casdoor.url, casdoor.url, [], shared_audiences=["cli-app"])
    try:
        own = claims_for(casdoor, tenant, aud=[f"cli-app-org-{tenant.organization}"])
        verified = await verifier.verify(casdoor_signed(casdoor, own))
        assert verified.resolve.organization == tenant.organization
        other = claims_for(casdoor, tenant, aud=["cli-app-org-someone-else"])
        with pytest.raises(InvalidToken):
            await verifier.verify(casdoor_signed(casdoor, other))
    finally:
        await verifier.aclose()


async def test_per_tenant_application_audience_is_bound_to_the_token_owner(
    casdoor: CasdoorServer, tenant: Tenant
) -> None:
    verifier = JwtVerifier(casdoor.url, casdoor.url, [], org_audiences=[ORG_CLI_APPLICATION])
    try:
        own = claims_for(casdoor, tenant, aud=[org_cli_application(tenant.organization)])
        verified = await verifier.verify(casdoor_signed(casdoor, own))
        assert verified.resolve.organization == tenant.organization
        # another tenant's CLI application, and the bare template, are not this user's
        for aud in (org_cli_application("someone-else"), ORG_CLI_APPLICATION):
            with pytest.raises(InvalidToken):
                await verifier.verify(
                    casdoor_signed(casdoor, claims_for(casdoor, tenant, aud=[aud]))
                )
    finally:
        await verifier.aclose()


async def test_cached_verified_token_still_expires_on_time(
    casdoor: CasdoorServer, tenant: Tenant
) -> None:
    clock = FakeClock(time.time())
    verifier = JwtVerifier(casdoor.url, casdoor.url, [tenant.client_id], leeway=0, clock=clock)
    try:
        now = int(clock())
        soon = now + 2
        token = casdoor_signed(casdoor, claims_for(casdoor, tenant, iat=now, nbf=now, exp=soon))
        assert (await verifier.verify(token)).claims["exp"] == soon
        assert (await verifier.verify(token)).claims["exp"] == soon  # from the cache
        clock.advance(soon - clock() + 0.5)
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(token)
        assert info.value.code == "expired_token"
    finally:
        await verifier.aclose()

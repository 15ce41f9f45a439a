"""nginx in front of the real Casdoor (deploy/nginx/casdoor.conf.template): users' pages,
OIDC and the token endpoint pass; an application's credentials and the admin surface do
not. A direct call shows each refused credential is a Casdoor admin credential indeed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from hanzo_contract.signin import DEVICE_CODE_GRANT
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import casdoor_ui_dir
from hanzo_stack.servers import CasdoorGateway, SidecarServer
from tests.support.casdoor_admin import sidecar_casdoor_env


@dataclass
class Fronted:
    casdoor: CasdoorServer
    gateway: str
    sidecar: SidecarServer


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fronted]:
    state = tmp_path_factory.mktemp("casdoor-fronted")
    casdoor = CasdoorServer(state / "casdoor")
    casdoor.ui_dir = casdoor_ui_dir()  # the sign-in pages are part of what must pass
    casdoor.start()
    started: list[CasdoorServer | SidecarServer | CasdoorGateway] = [casdoor]
    try:
        # the sidecar holds the gates for sign-up and the token endpoint
        sidecar = SidecarServer(state / "sidecar", env=sidecar_casdoor_env(casdoor)).start()
        started.append(sidecar)
        gateway = CasdoorGateway(state / "nginx", casdoor.url[7:], sidecar.addr).start()
        started.append(gateway)
        yield Fronted(casdoor, gateway.url, sidecar)
    finally:
        for server in reversed(started):
            server.stop()


def _app_token(base: str, casdoor: CasdoorServer) -> httpx.Response:
    return httpx.post(
        f"{base}/api/login/oauth/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": casdoor.client_id,
            "client_secret": casdoor.client_secret,
        },
        timeout=10,
    )


def _refused(response: httpx.Response) -> bool:
    """The gateway's own refusal: 403 with the shared JSON error body."""
    return response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_sign_in_pages_oidc_and_token_endpoint_pass(fronted: Fronted) -> None:
    gateway, casdoor = fronted.gateway, fronted.casdoor
    discovery = httpx.get(f"{gateway}/.well-known/openid-configuration", timeout=10)
    assert discovery.status_code == 200 and discovery.json()["issuer"] == casdoor.url
    jwks = httpx.get(f"{gateway}/.well-known/jwks", timeout=10)
    assert jwks.status_code == 200 and jwks.json()["keys"]
    login = httpx.get(f"{gateway}/login", timeout=10)
    assert login.status_code == 200 and '<div id="root">' in login.text
    token = _app_token(gateway, casdoor)
    assert token.status_code == 200 and token.json()["access_token"]
    # a signed-out visitor's account call reaches Casdoor, which answers it
    account = httpx.get(f"{gateway}/api/get-account", timeout=10)
    assert account.status_code == 200 and account.json()["status"] == "error"


def test_application_credentials_never_reach_casdoor(fronted: Fronted) -> None:
    gateway, casdoor = fronted.gateway, fronted.casdoor
    token = _app_token(gateway, casdoor).json()["access_token"]
    secret = {"clientId": casdoor.client_id, "clientSecret": casdoor.client_secret}
    as_app = [
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"params": secret},
        {"auth": (casdoor.client_id, casdoor.client_secret)},
    ]
    for credential in as_app[1:]:
        # straight to Casdoor, the client secret is a global admin: every organization
        direct = httpx.get(
            f"{casdoor.url}/api/get-organizations",
            params={"owner": "admin", **credential.get("params", {})},
            headers=credential.get("headers"),
            auth=credential.get("auth"),
            timeout=10,
        )
        assert direct.json()["status"] == "ok", credential
        assert {org["name"] for org in direct.json()["data"]} >= {"built-in", "hanzo"}
    for credential in as_app:
        # the gateway refuses each, on the allow-listed paths and elsewhere
        for path in ("/api/get-organizations", "/api/get-users", "/api/get-account", "/"):
            through = httpx.get(
                f"{gateway}{path}",
                params={"owner": "admin", **credential.get("params", {})},
                headers=credential.get("headers"),
                auth=credential.get("auth"),
                timeout=10,
            )
            assert _refused(through), (path, credential, through.text)
    # the admin surface is not routed at all, credential or not
    for path in (
        "/api/get-applications?owner=admin",
        "/api/get-certs?owner=admin",
        "/api/get-records",
        "/api/add-organization",
        "/api/get-tokens?owner=admin",
        "/cas/built-in/app-built-in/serviceValidate",
        "/scim/Users",
        "/swagger/",
    ):
        assert _refused(httpx.get(f"{gateway}{path}", timeout=10)), path
    # Casdoor's own "sign me in from the query string" is refused too
    auto = httpx.get(
        f"{gateway}/api/get-account",
        params={"username": "built-in/admin", "password": "x"},
        timeout=10,
    )
    assert _refused(auto)


def test_signup_never_reaches_casdoor_but_through_the_gate(fronted: Fronted) -> None:
    """Casdoor's own app-built-in takes sign-ups for built-in, whose users are Casdoor-wide
    admins; through the gateway a sign-up reaches only the sidecar's gate, which refuses
    it, in every spelling nginx routes to Casdoor."""
    body = {
        "application": "app-built-in",
        "organization": "built-in",
        "username": "intruder",
        "password": "intruder-pw-1",
        "email": "intruder@example.test",
    }
    for path in ("/api/signup", "//api/signup", "/api/./signup"):
        reply = httpx.post(f"{fronted.gateway}{path}", json=body, timeout=10)
        assert reply.status_code == 403, (path, reply.text)
        assert reply.json()["error"]["code"] == "signup_refused"
    for path in ("/api/signup/", "/api/Signup", "/api/signup%2F"):
        assert _refused(httpx.post(f"{fronted.gateway}{path}", json=body, timeout=10)), path


def test_get_application_through_the_gateway_is_always_anonymous(fronted: Fronted) -> None:
    """The sign-up page reads its application; a global admin's session cookie sent along
    would make Casdoor answer with the client secret, so the gateway drops the cookie."""
    casdoor = fronted.casdoor
    assert casdoor.secrets is not None
    with httpx.Client(base_url=casdoor.url, timeout=10) as direct:
        signed_in = direct.post(
            "/api/login",
            json={
                "application": "app-built-in",
                "organization": "built-in",
                "username": "admin",
                "password": casdoor.secrets.builtin_admin_password.get_secret_value(),
                "type": "login",
            },
        )
        assert signed_in.json()["status"] == "ok", signed_in.text
        cookies = dict(direct.cookies)
        assert cookies
        target = {"id": "admin/app-built-in"}
        # straight to Casdoor, the session sees the application's secret
        seen = direct.get("/api/get-application", params=target).json()["data"]
        assert seen["clientSecret"] not in ("", "***")
    through = httpx.get(
        f"{fronted.gateway}/api/get-application", params=target, cookies=cookies, timeout=10
    )
    assert through.status_code == 200, through.text
    assert through.json()["data"]["clientSecret"] == "***"
    assert seen["clientSecret"] not in through.text


def test_token_grants_for_a_bare_user_name_stop_at_the_gate(fronted: Fronted) -> None:
    """Casdoor mints a token for a user name alone on the device-code grant (no device
    code) and on the implicit grant types; through the gateway the sidecar's gate refuses
    them in a form body, a JSON body and the query string, and passes the rest."""
    url = f"{fronted.gateway}/api/login/oauth/access_token"
    client = fronted.casdoor.client_id
    bare = [
        {"grant_type": DEVICE_CODE_GRANT, "client_id": client, "username": "admin"},
        {"grant_type": DEVICE_CODE_GRANT, "client_id": client},
        {"grant_type": "token", "client_id": client, "username": "admin"},
        {"grant_type": "id_token", "client_id": client, "username": "admin"},
    ]
    for fields in bare:
        for sent in ({"data": fields}, {"json": fields}, {"params": fields}):
            reply = httpx.post(url, timeout=10, **sent)  # type: ignore[arg-type]
            assert reply.status_code == 400, (fields, sent, reply.text)
            assert reply.json()["error"]["code"] == "invalid_request"
    # a device grant that carries its device code goes on to Casdoor, which judges it
    passed = httpx.post(
        url,
        data={"grant_type": DEVICE_CODE_GRANT, "client_id": client, "device_code": "nope"},
        timeout=10,
    )
    assert "error" not in passed.json() or not isinstance(passed.json()["error"], dict)
    # the gate down: a JSON 503, never Casdoor answering unguarded
    fronted.sidecar.stop()
    try:
        down = httpx.post(url, data=bare[0], timeout=10)
        assert down.status_code == 503 and down.json()["error"]["code"] == "token_unavailable"
    finally:
        fronted.sidecar.start()

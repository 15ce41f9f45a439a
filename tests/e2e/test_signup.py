"""Self sign-up end to end: Casdoor's own sign-up page in Chromium, through the Casdoor
gateway (deploy/nginx/casdoor.conf.template) and the sidecar's sign-up gate.

A new user signs up on a tenant with ``signup: true`` and lands in that tenant with its
sign-up role only (no Casdoor admin flag, no other role, no other tenant); a tenant with
sign-up off shows no sign-up form, and the gate refuses its sign-ups and every crossing
(the open tenant's application naming another organization, ``built-in`` included).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import casdoor_ui_dir
from hanzo_stack.servers import CasdoorGateway, SidecarServer
from iam_sidecar.casdoor.scopes import scopes_of_user_object
from iam_sidecar.tenants.apply import apply_plan
from iam_sidecar.tenants.loader import parse_tenant_text
from iam_sidecar.tenants.model import login_application
from tests.support.browser import chromium
from tests.support.casdoor_admin import admin_client, sidecar_casdoor_env
from tests.support.signup import signup_form, tenants_text


@dataclass
class SignupStack:
    casdoor: CasdoorServer
    gateway: str
    open_org: str
    closed_org: str


@pytest.fixture(scope="module")
def signup_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignupStack]:
    state = tmp_path_factory.mktemp("signup")
    tag = uuid.uuid4().hex[:6]
    open_org, closed_org = f"open-{tag}", f"closed-{tag}"
    casdoor = CasdoorServer(state / "casdoor")
    casdoor.ui_dir = casdoor_ui_dir()
    casdoor.start()
    started: list[CasdoorServer | SidecarServer | CasdoorGateway] = [casdoor]
    try:
        spec = parse_tenant_text(tenants_text(open_org, closed_org))

        async def apply() -> None:
            async with admin_client(casdoor) as client:
                await apply_plan(client, spec)

        asyncio.run(apply())
        sidecar = SidecarServer(
            state / "sidecar",
            env=sidecar_casdoor_env(casdoor),
        ).start()
        started.append(sidecar)
        gateway = CasdoorGateway(state / "nginx", casdoor.url[7:], sidecar.addr).start()
        started.append(gateway)
        yield SignupStack(casdoor, gateway.url, open_org, closed_org)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _user(stack: SignupStack, org: str, name: str) -> dict | None:
    async def get() -> dict | None:
        async with admin_client(stack.casdoor) as client:
            return await client.get_user(org, name)

    # Playwright's sync API owns this thread's event loop: ask from another thread
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, get()).result()


def test_a_new_user_signs_up_and_holds_the_signup_role_only(
    signup_stack: SignupStack, browser: Browser, tmp_path: Path
) -> None:
    stack = signup_stack
    name = f"newbie{uuid.uuid4().hex[:6]}"
    page = browser.new_page()
    page.goto(f"{stack.gateway}/signup/{login_application(stack.open_org)}")
    page.wait_for_selector("#signup_username", timeout=30_000)
    page.fill("#signup_username", name)
    page.fill("#signup_name", "New Bie")
    page.fill("#signup_password", "Signup-pw-12345")
    page.fill("#signup_confirm", "Signup-pw-12345")
    page.fill("#signup_email", f"{name}@example.test")
    with page.expect_response(lambda r: r.url.endswith("/api/signup"), timeout=30_000) as sent:
        page.click("button.signup-button")
    page.screenshot(path=tmp_path / "after-signup.png")
    answer = sent.value  # through the gateway and the gate
    assert answer.status == 200 and answer.json()["status"] == "ok", answer.text()
    user = None
    for _ in range(50):  # Casdoor answers before the page moves on; bounded wait
        user = _user(stack, stack.open_org, name)
        if user is not None:
            break
        page.wait_for_timeout(100)
    assert user is not None, "the signed-up user is not in the tenant"
    assert user["owner"] == stack.open_org and user["isAdmin"] is False
    assert user["signupApplication"] == login_application(stack.open_org)
    roles, scopes = scopes_of_user_object(user)
    assert roles == ("reader",) and scopes == {"memory:read"}
    assert _user(stack, stack.closed_org, name) is None
    page.close()


def test_a_closed_tenant_takes_no_signups(signup_stack: SignupStack, browser: Browser) -> None:
    stack = signup_stack
    page = browser.new_page()
    page.goto(f"{stack.gateway}/signup/{login_application(stack.closed_org)}")
    expect(page.get_by_text("does not allow to sign up", exact=False)).to_be_visible(timeout=30_000)
    expect(page.locator("#signup_username")).to_have_count(0)
    page.close()
    intruder = f"intruder{uuid.uuid4().hex[:6]}"
    cases = [
        (login_application(stack.closed_org), stack.closed_org),  # sign-up off
        (login_application(stack.open_org), stack.closed_org),  # crossing tenants
        (login_application(stack.open_org), "built-in"),  # Casdoor-wide admins
        ("app-built-in", "built-in"),  # Casdoor's own application
    ]
    for application, organization in cases:
        body = signup_form(organization, intruder, application=application)
        reply = httpx.post(f"{stack.gateway}/api/signup", json=body, timeout=15)
        assert reply.status_code == 403, (application, organization, reply.text)
        assert reply.json()["error"]["code"] == "signup_refused"
        assert _user(stack, organization, intruder) is None


@pytest.mark.parametrize("shape", ["case", "twice"])
def test_a_signup_naming_its_organization_twice_is_refused(
    signup_stack: SignupStack, shape: str
) -> None:
    """Casdoor reads the body with Go's JSON, which matches keys in any case and keeps the
    last of a name: ``"Organization": <the closed tenant>`` after the open tenant's own pair
    signed an anonymous user up to the closed tenant while the gate checked the open one
    (``built-in`` only Casdoor's own consent switch stopped). A key given twice, in any
    case, is refused."""
    stack = signup_stack
    intruder = f"intruder{uuid.uuid4().hex[:6]}"
    pairs = list(signup_form(stack.open_org, intruder).items())
    pairs.append(("Organization" if shape == "case" else "organization", stack.closed_org))
    raw = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    reply = httpx.post(
        f"{stack.gateway}/api/signup",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=15,
    )
    assert _user(stack, stack.closed_org, intruder) is None, reply.text
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_request"

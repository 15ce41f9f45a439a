"""Casdoor's own pages in Chromium, as the stack serves them.

``hanzo login --device`` is finished where it says: the CLI runs as a user runs it (a
process whose output we read); the printed page is the tenant's CLI application's
(hanzo_contract.signin), so it signs the user in to their own organization, and a user of
another tenant cannot finish that code. The sign-in, device and admin pages load nothing
from the internet (casdoor/static/README.md) and show no guided tour.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from hanzo_client.cli import _where
from hanzo_contract.signin import (
    DEVICE_CODE_GRANT,
    DEVICE_LOGIN_OFF_REASON,
    DEVICE_LOGIN_SETTING,
    org_cli_application,
    org_cli_client_id,
)
from tests.support.browser import OfflineLog, chromium, offline_page

from .support import RunningStack

PROMPT = re.compile(r"Open (\S+) and enter (\S+)")


def sign_in_on(page: Page, url: str, user: str, password: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.fill("input#input", user)
    page.fill("input[type=password]", password)
    page.click("button[type=submit]")


def test_device_login_is_finished_on_the_printed_page(
    running_stack: RunningStack, tmp_path: Path
) -> None:
    stack = running_stack
    env = {
        **os.environ,
        "HANZO_STATE_DIR": stack.info.state_dir,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "250",  # one line per message
    }
    gated = _gate_passes(stack)
    argv = [sys.executable, "-m", "hanzo_stack", "login", "--device", "--org", "acme"]
    proc = subprocess.Popen(
        [*argv, "--timeout", "90"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        prompt = PROMPT.search(first)
        assert prompt, first
        url, code = prompt.groups()
        assert url.endswith(f"/device/{code}"), url
        assert "organization acme" in proc.stdout.readline()
        with chromium() as browser:
            page = browser.new_page()
            sign_in_on(page, url, "alice", stack.password("ACME_ALICE_PASSWORD"))
            expect(page.get_by_text("Logged in successfully")).to_be_visible(timeout=15_000)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "signed in as acme/alice" in out
    assert (tmp_path / "config" / "hanzo" / "credentials.json").exists()
    # the CLI polled the token endpoint through the sidecar's token gate, not Casdoor's port
    assert _gate_passes(stack) > gated


def _gate_passes(stack: RunningStack) -> int:
    """Requests the sidecar's token gate has answered (its access log)."""
    log = Path(stack.info.logs_dir) / "sidecar.log"
    return sum('"path": "/casdoor/token"' in line for line in log.read_text().splitlines())


def test_cli_signs_in_through_the_token_gate(running_stack: RunningStack) -> None:
    """``hanzo login`` signs in at the Casdoor front the stack advertises in stack.json, whose
    token endpoint is the sidecar's token gate: a device grant for a bare user name, sent
    where the CLI sends its token requests, is refused (Casdoor's own port answers it with
    a token: the flaw test below)."""
    stack = running_stack
    casdoor, *_ = _where(None, Path(stack.info.state_dir), None, None, "acme", None)
    assert casdoor == stack.info.casdoor_front_url != stack.info.casdoor_url
    refused = httpx.post(
        f"{casdoor}/api/login/oauth/access_token",
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": org_cli_application("acme"),
            "username": "alice",
        },
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"


def _implicit(client_id: str) -> dict[str, str]:
    """Casdoor's implicit grant for a bare user name (a tag skips the application's check
    of its grant types): what the token gate exists to refuse."""
    return {"grant_type": "token", "username": "alice", "tag": "x", "client_id": client_id}


#: requests where the gate and Casdoor could read the grant apart (found in review): the
#: implicit grant in the query under a harmless JSON one, a form field given twice (Casdoor
#: takes the first), a JSON key in another case (Go's JSON matches it), a JSON body sent as
#: text (Casdoor parses any body as JSON), a multipart form (Casdoor reads it)
GATE_DIFFERENTIALS = {
    "query_under_json": lambda cli: {
        "params": _implicit(cli),
        "json": {"grant_type": "authorization_code"},
    },
    "form_field_twice": lambda cli: {
        "params": {k: v for k, v in _implicit(cli).items() if k != "grant_type"},
        "content": "grant_type=token&grant_type=authorization_code",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    },
    "json_key_case": lambda cli: {
        "json": {**_implicit(cli), "grant_type": "authorization_code", "Grant_Type": "token"},
    },
    "json_as_text": lambda cli: {
        "content": json.dumps(_implicit(cli)),
        "headers": {"Content-Type": "text/plain"},
    },
    "multipart": lambda cli: {"files": {k: (None, v) for k, v in _implicit(cli).items()}},
}


@pytest.mark.parametrize("shape", GATE_DIFFERENTIALS)
def test_the_token_gate_forwards_only_what_it_checked(
    running_stack: RunningStack, shape: str
) -> None:
    """However a request spreads its fields (query, body, twice, another case, another body
    type), the gate refuses it or forwards a form of the fields it checked: no token for a
    bare user name comes out of the Casdoor front."""
    front = running_stack.info.casdoor_front_url
    request = GATE_DIFFERENTIALS[shape](org_cli_application("acme"))
    answer = httpx.post(f"{front}/api/login/oauth/access_token", **request)
    assert "access_token" not in answer.text, (shape, answer.text)
    assert answer.status_code == 400, (shape, answer.status_code, answer.text)


def test_device_sign_in_is_refused_where_the_tenant_file_leaves_it_off(
    running_stack: RunningStack, tmp_path: Path
) -> None:
    """globex keeps the default: Casdoor gives no device code for its CLI application, its
    token endpoint issues no device-code token (not even for a bare user name: the flaw
    below), and ``hanzo login --device`` says which setting to change."""
    stack = running_stack
    casdoor = stack.info.casdoor_url
    refused = httpx.post(f"{casdoor}/api/device-auth", data={"client_id": "globex_cli"}).json()
    assert "device_code" not in refused and "client_id" in refused["error"], refused
    # the client id it answers to while off has no device grant at all
    off_id = org_cli_client_id("globex", device_login=False)
    assert off_id != org_cli_application("globex")
    for client_id in (org_cli_application("globex"), off_id):
        answer = httpx.post(
            f"{casdoor}/api/login/oauth/access_token",
            data={"grant_type": DEVICE_CODE_GRANT, "client_id": client_id, "username": "carol"},
        ).json()
        assert "access_token" not in answer, answer
        expected = "unsupported_grant_type" if client_id == off_id else "invalid_client"
        assert answer["error"] == expected, answer

    env = {
        **os.environ,
        "HANZO_STATE_DIR": stack.info.state_dir,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "250",
    }
    argv = [sys.executable, "-m", "hanzo_stack", "login", "--device", "--org", "globex"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    said = " ".join((done.stdout + done.stderr).split())
    assert "Traceback" not in said and "Open " not in said, said
    assert f"`{DEVICE_LOGIN_SETTING}: true`" in said and DEVICE_LOGIN_OFF_REASON in said, said
    assert not (tmp_path / "config" / "hanzo" / "credentials.json").exists()


def test_another_tenants_user_cannot_finish_the_code(running_stack: RunningStack) -> None:
    stack = running_stack
    casdoor = stack.info.casdoor_url
    client_id = org_cli_application("acme")
    start = httpx.post(
        f"{casdoor}/api/device-auth", data={"client_id": client_id, "scope": "openid"}
    ).json()
    with chromium() as browser:
        page = browser.new_page()
        sign_in_on(
            page, start["verification_uri"], "carol", stack.password("GLOBEX_CAROL_PASSWORD")
        )
        expect(page.get_by_text("acme/carol doesn't exist")).to_be_visible(timeout=15_000)
        expect(page.get_by_text("Logged in successfully")).to_have_count(0)
    time.sleep(1)  # nothing in flight could still approve it
    pending = httpx.post(
        f"{casdoor}/api/login/oauth/access_token",
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": client_id,
            "device_code": start["device_code"],
        },
    ).json()
    assert pending.get("error") == "authorization_pending", pending


def assert_all_local(log: OfflineLog) -> None:
    assert log.blocked == [], log.blocked  # nothing asked of the internet
    assert log.failed == [], log.failed
    assert log.console_errors == [], log.console_errors


def test_casdoor_pages_load_offline_without_tours(running_stack: RunningStack) -> None:
    stack = running_stack
    casdoor = stack.info.casdoor_url
    secrets = stack.stack.casdoor.secrets
    assert secrets is not None
    start = httpx.post(
        f"{casdoor}/api/device-auth", data={"client_id": org_cli_application("acme")}
    ).json()
    with chromium() as browser:
        page, log = offline_page(browser)
        page.goto(start["verification_uri"], wait_until="networkidle")
        expect(page.locator("input[type=password]")).to_be_visible()
        assert_all_local(log)

        page, log = offline_page(browser)
        page.goto(f"{casdoor}/login", wait_until="networkidle")
        # the logo is ours, from the stack's nginx, and loaded
        page.wait_for_function(
            "gw => [...document.images].some(i => i.src.startsWith(gw) && i.naturalWidth > 0)",
            arg=stack.gateway,
            timeout=15_000,
        )
        page.fill("input#input", "admin")
        page.fill("input[type=password]", secrets.builtin_admin_password.get_secret_value())
        with page.expect_response("**/api/login"):
            page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{casdoor}/users", wait_until="networkidle")
        expect(page.get_by_text("alice@acme.test")).to_be_visible(timeout=15_000)
        page.wait_for_timeout(1_000)  # the tour opens once the list has rendered
        assert page.locator(".ant-tour").count() == 0
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || !i.naturalWidth).map(i => i.src)"
        )
        assert broken == [], broken
        assert_all_local(log)


def test_known_casdoor_flaw_device_approval_keeps_only_the_user_name(
    running_stack: RunningStack,
) -> None:
    """Casdoor v1.1000.0: a device code approved by ``globex/alice`` is redeemed as
    ``acme/alice`` (the approval keeps the name only; hanzo_client/README.md, "Known Casdoor
    flaw"). Kept as a test so the day Casdoor fixes it this fails: then assert the refusal
    and drop the README's warning."""
    stack = running_stack
    casdoor = stack.info.casdoor_url
    admin = (stack.stack.casdoor.client_id, stack.stack.casdoor.client_secret)
    password = "Other-alice-" + os.urandom(6).hex()
    added = httpx.post(
        f"{casdoor}/api/add-user",
        auth=admin,
        json={"owner": "globex", "name": "alice", "password": password, "type": "normal-user"},
    ).json()
    assert added["status"] == "ok", added
    start = httpx.post(
        f"{casdoor}/api/device-auth", data={"client_id": org_cli_application("acme")}
    ).json()
    approved = httpx.post(
        f"{casdoor}/api/login",
        json={
            "application": org_cli_application("globex"), "organization": "globex",
            "username": "alice", "password": password, "type": "device",
            "userCode": start["user_code"],
        },
    ).json()  # fmt: skip
    assert approved["status"] == "ok" and approved["data"] == "globex/alice", approved
    token = httpx.post(
        f"{casdoor}/api/login/oauth/access_token",
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": org_cli_application("acme"),
            "device_code": start["device_code"],
        },
    ).json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["owner"], claims["name"]) == ("acme", "alice")


def test_known_casdoor_flaw_device_grant_takes_a_bare_user_name(
    running_stack: RunningStack,
) -> None:
    """Casdoor v1.1000.0: the token endpoint, asked for the device grant with no device code,
    takes the ``username`` form field as is: no password, no approval. So whoever can reach
    Casdoor signs in as any user of a tenant whose device sign-in is on (acme in this
    stack); why ``device_login`` is off by default. Fails the day Casdoor fixes it."""
    answer = httpx.post(
        f"{running_stack.info.casdoor_url}/api/login/oauth/access_token",
        data={"grant_type": DEVICE_CODE_GRANT, "client_id": org_cli_application("acme"),
              "username": "alice"},
    ).json()  # fmt: skip
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert (claims["owner"], claims["name"]) == ("acme", "alice")

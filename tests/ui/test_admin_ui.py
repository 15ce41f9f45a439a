"""Casdoor's own admin UI, built from the pinned module, in a real headless Chromium.

An operator signs in as ``built-in/admin`` (with the password we generated, since the
default ``123`` is retired at first start) and finds, on the organizations page, the
tenant that our tenant sync created.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import build_casdoor_ui
from tests.support.browser import chromium


@pytest.fixture(scope="module")
def casdoor_with_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasdoorServer]:
    server = CasdoorServer(tmp_path_factory.mktemp("casdoor-ui"))
    server.ui_dir = build_casdoor_ui()  # cached after the first build
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _sign_in(browser: Browser, server: CasdoorServer, password: str, shots: Path):
    page = browser.new_page()
    page.goto(f"{server.url}/login", wait_until="networkidle")
    page.fill("input#input", "admin")
    page.fill("input[type=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=shots / "after-login.png")
    return page


def test_admin_signs_in_and_sees_the_synced_organization(
    casdoor_with_ui: CasdoorServer, browser: Browser, tmp_path: Path, sync_tenant
) -> None:
    server = casdoor_with_ui
    org = sync_tenant(server, f"ui-{uuid.uuid4().hex[:6]}")
    assert server.secrets is not None
    page = _sign_in(
        browser, server, server.secrets.builtin_admin_password.get_secret_value(), tmp_path
    )
    page.goto(f"{server.url}/organizations", wait_until="networkidle")
    page.screenshot(path=tmp_path / "organizations.png")
    expect(page.get_by_text(org, exact=True).first).to_be_visible(timeout=15_000)
    page.close()


def test_default_admin_password_no_longer_signs_in(
    casdoor_with_ui: CasdoorServer, browser: Browser, tmp_path: Path
) -> None:
    page = _sign_in(browser, casdoor_with_ui, "123", tmp_path)
    expect(page.get_by_text("password or code is incorrect")).to_be_visible(timeout=10_000)
    page.goto(f"{casdoor_with_ui.url}/organizations", wait_until="networkidle")
    expect(page.locator("button[type=submit]")).to_be_visible()  # sent back to sign in
    expect(page.get_by_text("hanzo", exact=True)).to_have_count(0)
    page.close()

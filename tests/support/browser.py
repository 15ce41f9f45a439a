"""Debian's Chromium, headless, through Playwright: one launch for every browser test.

``offline_page`` plays a machine without internet: any request to a host that is not
loopback is aborted and recorded, as are failed requests and console errors, so a test can
say that a page needed nothing from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflineLog:
    """What an offline page tried and what went wrong."""

    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def offline_page(browser: Browser) -> tuple[Page, OfflineLog]:
    """A fresh page whose requests may reach loopback only."""
    log = OfflineLog()
    page = browser.new_page()

    def only_loopback(route: Route) -> None:
        url = route.request.url
        host = urlparse(url).hostname or ""
        if urlparse(url).scheme in ("data", "blob") or host in LOOPBACK_HOSTS:
            route.continue_()
        else:
            log.blocked.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_loopback)

    def failed(request: Request) -> None:
        # leaving a page cancels its fetches in flight (net::ERR_ABORTED): not a failure
        if request.failure != "net::ERR_ABORTED":
            log.failed.append(f"{request.url} ({request.failure})")

    page.on("requestfailed", failed)
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    return page, log

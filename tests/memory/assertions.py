"""A client on the memory app that binds placeholder assertions to each request
(``tests.support.assertions``), as the gateway in front would."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from tests.support.assertions import bind_assertion


def memory_client(app: Starlette, base_url: str = "http://memory.test") -> httpx.AsyncClient:
    """A client on ``app`` whose placeholders become request-bound assertions."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        event_hooks={"request": [bind_assertion]},
    )

"""A client on the memory app whose placeholder identity headers become request-bound
assertions (the binding hook itself is ``tests.support.assertions``, shared by every area)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from tests.support.assertions import bind_assertion


def memory_client(app: Starlette, base_url: str = "http://memory.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        event_hooks={"request": [bind_assertion]},
    )

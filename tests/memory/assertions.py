"""The gateway's part in tests that call the memory app directly: binding assertions.

The memory service accepts only an assertion signed for it and for the very request
(audience, method, raw path). Tests name their caller with a placeholder header
(``Caller.headers``); the client's request hook swaps it for an assertion signed for the
request being sent, as the gateway would. Kept in its own module so that one registry
serves every test module, however pytest imports the conftest.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from starlette.applications import Starlette

from hanzo_contract.headers import ASSERTION


class Signs(Protocol):
    def sign_for(self, method: str, path: str) -> str: ...


#: placeholder -> the caller it stands for
_PENDING: dict[str, Signs] = {}
_PLACEHOLDER = "pending-assertion:"


def placeholder_for(caller: Signs) -> str:
    placeholder = f"{_PLACEHOLDER}{id(caller)}"
    _PENDING[placeholder] = caller
    return placeholder


async def bind_assertion(request: httpx.Request) -> None:
    """Sign a placeholder's caller for this very request. Anything else a test put in the
    header (forged, expired, bound elsewhere) is sent as it is."""
    who = _PENDING.get(request.headers.get(ASSERTION, ""))
    if who is not None:
        path = request.url.raw_path.decode("ascii").partition("?")[0]
        request.headers[ASSERTION] = who.sign_for(request.method, path)


def memory_client(app: Starlette, base_url: str = "http://memory.test") -> httpx.AsyncClient:
    """A client on ``app`` whose placeholders become request-bound assertions."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        event_hooks={"request": [bind_assertion]},
    )

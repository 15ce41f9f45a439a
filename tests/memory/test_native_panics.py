"""A panic in a native library is answered with the JSON error body.

LanceDB's Rust raises pyo3's ``PanicException`` (seen when a read met a table an
organization's erasure had just closed); it derives from ``BaseException``, which
Starlette's error handling does not catch, so uvicorn answered its plain-text 500.
:class:`PanickingBackend` is the test's stand-in for the native library: the real SQLite
backend whose reads raise such an exception.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from memory_service.backends.sqlite import SqliteBackend
from tests.support.assertions import bind_assertion

from .conftest import DIM, build_app


class Panic(BaseException):
    """What pyo3's PanicException is: not an ``Exception``."""


class PanickingBackend(SqliteBackend):
    async def get(self, tenant: str, ids: list[str]) -> list:
        raise Panic("called `Option::unwrap()` on a `None` value")


async def test_a_native_panic_is_the_json_500(authenticator, make_caller, tmp_path: Path) -> None:
    backend = PanickingBackend(tmp_path / "m.sqlite3", DIM)
    await backend.open()
    app = build_app(backend, authenticator, tmp_path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://memory.test",
        event_hooks={"request": [bind_assertion]},
    ) as client:
        reply = await client.get(
            "/v1/memory/retrieve", params={"id": "m1"}, headers=make_caller().headers
        )
    await backend.close()
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error"

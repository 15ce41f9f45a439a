"""The request id middleware and the JSON log line, on a real app over ASGI (issue 12).

A service makes an id when none (or an unsafe one) is sent, keeps a safe one, returns it,
puts it in its error bodies and log lines and passes it on to the next part; every line
is one JSON object of the shared shape, and credentials never reach it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_plugins.background import BackgroundTask
from hanzo_contract.apikey import generate_key
from hanzo_contract.errors import error_body
from hanzo_contract.jsonlog import JsonFormatter, configure, redact
from hanzo_contract.request_id import RequestIdMiddleware, current_request_id, propagate

log = logging.getLogger("tests.observability.app")


class Captured:
    """The lines the shared formatter writes while a test runs."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    out = Captured()
    handler = logging.StreamHandler(out.stream)
    handler.setFormatter(JsonFormatter("test-part"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _app(seen: dict[str, str]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        log.info("handled", extra={"route": "/echo"})
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(204, headers=r.headers)),
            event_hooks={"request": [propagate]},
        ) as next_part:
            passed = await next_part.get("http://next.part/")
        seen["passed_on"] = passed.headers.get("x-request-id", "")
        return JSONResponse(error_body("teapot", "short and stout"), status_code=418)

    return Starlette(routes=[Route("/echo", echo)], middleware=[Middleware(RequestIdMiddleware)])


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (None, False),
        ("client-42.a:b", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long
        ('a"b', False),  # not a plain token: never echoed into a body or a log
        ("two words", False),
        ("new\\nline", False),
    ],
)
async def test_one_id_in_answer_error_body_log_line_and_next_call(
    captured: Captured, sent: str | None, kept: bool
) -> None:
    seen: dict[str, str] = {}
    headers = {"X-Request-Id": sent} if sent is not None else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(seen)), base_url="http://svc"
    ) as client:
        answer = await client.get("/echo", headers=headers)
    request_id = answer.headers["x-request-id"]
    if kept:
        assert request_id == sent
    else:
        assert len(request_id) == 32 and int(request_id, 16) >= 0  # made here, nginx-shaped
        assert sent is None or sent not in answer.text
    assert answer.json()["error"]["request_id"] == request_id
    assert seen["passed_on"] == request_id
    (line,) = [line for line in captured.lines() if line["message"] == "handled"]
    assert line["request_id"] == request_id and line["route"] == "/echo"


async def test_each_request_its_own_id_and_none_outside(captured: Captured) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app({})), base_url="http://svc"
    ) as client:
        ids = {(await client.get("/echo")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    log.info("between requests")
    (outside,) = [line for line in captured.lines() if line["message"] == "between requests"]
    assert outside["request_id"] is None


def test_the_line_shape_and_uvicorn_access_lines() -> None:
    formatter = JsonFormatter("memory")
    record = logging.LogRecord("memory_service", logging.WARNING, __file__, 1, "m %s", ("x",), None)
    line = json.loads(formatter.format(record))
    assert set(line) == {"time", "level", "service", "request_id", "logger", "message"}
    assert (line["level"], line["service"], line["message"]) == ("warning", "memory", "m x")
    assert line["time"].endswith("+00:00")
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/memory/retrieve?q=1", "1.1", 200),
        None,
    )
    line = json.loads(formatter.format(access))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/memory/retrieve?q=1", 200)


def test_secrets_never_reach_a_line() -> None:
    key, key_id = generate_key()
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    password = "Correct-Horse-9!battery"
    texts = [
        f"GET /v1/memory/retrieve?api_key={key}&q=1",
        f"Authorization: Bearer {key}",
        f"authorization=Bearer%20{jwt}",
        f"token {jwt} refused",
        f"POST /api/login password={password}&username=alice",
        json.dumps({"username": "alice", "password": password, "client_secret": password}),
        f"/callback?code={password}&state=ok",
    ]
    for text in texts:
        scrubbed = redact(text)
        for secret in (key.split("_", 1)[1], jwt, password, key):
            assert secret not in scrubbed, (text, scrubbed)
    assert key_id in redact(f"key {key} revoked")  # the public id stays, for operators
    # and through a real line, with the secret in a field and in the message
    form = f"username=alice&password={password}"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login form %s", (form,), None)
    record.body = {"password": password, "key": key}
    assert password not in JsonFormatter("sidecar").format(record)
    assert key not in JsonFormatter("sidecar").format(record)


def test_configure_routes_uvicorn_through_the_shared_handler() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("gateway", logging.INFO)
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.formatter.service == "gateway"
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            assert logging.getLogger(name).propagate and not logging.getLogger(name).handlers
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_an_outer_middleware_id_is_kept_inside() -> None:
    """Direct mode puts one before the auth check and the memory app has its own: a
    refusal and an answer name the same id, and the client gets one header."""
    seen: dict[str, str] = {}
    outer = RequestIdMiddleware(_app(seen))
    outer = RequestIdMiddleware(outer)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://svc"
    ) as client:
        answer = await client.get("/echo")
    assert answer.headers.get_list("x-request-id") == [seen["passed_on"]]
    assert answer.json()["error"]["request_id"] == seen["passed_on"]


async def test_a_background_task_started_by_a_request_does_not_keep_its_id() -> None:
    """The plugin's reporters start their task on first use, inside some request: the task
    lives on, so it must not log every later line under that first request's id."""
    seen: list[str | None] = []
    ran = asyncio.Event()

    async def report_forever() -> None:
        seen.append(current_request_id())
        ran.set()

    task = BackgroundTask(report_forever)

    async def start(scope: Any, receive: Any, send: Any) -> None:
        task.start()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = RequestIdMiddleware(start)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as client:
        answer = await client.get("/", headers={"X-Request-Id": "first-request"})
    assert answer.headers["x-request-id"] == "first-request"
    await asyncio.wait_for(ran.wait(), timeout=10)
    await task.stop()
    assert seen == [None]

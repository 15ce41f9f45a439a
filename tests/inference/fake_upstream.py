"""``FakeChatUpstream``: a named fake of an OpenAI-compatible chat server.

No model can run here, so this plays one: it streams like the real API (one
``chat.completion.chunk`` per piece of text, small delays between them, then a final
``choices: []`` chunk with ``usage`` when ``stream_options.include_usage`` is set, then
``[DONE]``), answers non-streamed calls with ``usage``, refuses what a real one refuses, and
records what it received and when its client went away. It runs in a thread of the test
process (uvicorn on a loopback port), so tests read its records directly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

from hanzo_stack.process import LOOPBACK, free_port, tcp_open

PIECES = ("The ", "quick ", "brown ", "fox.")
PROMPT_TOKENS = 11
COMPLETION_TOKENS = len(PIECES)
#: a model name the fake refuses like a real upstream refusing a bad request
REFUSING_MODEL = "fake-refuses"


@dataclass
class Call:
    body: dict[str, Any]
    headers: dict[str, str]
    #: chunks of text produced so far (the held last one is not produced until released)
    produced: int = 0
    finished: bool = False
    disconnected: bool = False


@dataclass
class FakeChatUpstream:
    port: int = field(default_factory=free_port)
    delay: float = 0.02
    calls: list[Call] = field(default_factory=list)
    #: while clear, a stream stops before its last chunk; ``release`` lets it finish
    release: threading.Event = field(default_factory=threading.Event)
    hold_timeout: float = 30.0

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def disconnects(self) -> int:
        return sum(c.disconnected for c in self.calls)

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = json.loads(raw or b"{}")
        call = Call(body, headers)
        self.calls.append(call)
        if scope["path"] != "/v1/chat/completions":
            await self._json(send, 404, {"error": {"message": "no such path"}})
            return
        if body.get("model") == REFUSING_MODEL:
            await self._json(send, 400, {"error": {"message": "temperature must be <= 2"}})
            return
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        if not body.get("stream"):
            call.produced, call.finished = len(PIECES), True
            message = {"role": "assistant", "content": "".join(PIECES)}
            await self._json(
                send,
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                await self._stream(send, call, usage)
                call.finished = True
                group.cancel_scope.cancel()

            group.start_soon(stream)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
            if not call.finished:
                call.disconnected = True
            group.cancel_scope.cancel()

    async def _stream(self, send: Any, call: Call, usage: dict[str, int]) -> None:
        model = call.body.get("model")

        async def event(chunk: dict[str, Any] | str) -> None:
            data = chunk if isinstance(chunk, str) else json.dumps(chunk)
            body = f"data: {data}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                    "choices": choices, **extra}  # fmt: skip

        for i, piece in enumerate(PIECES):
            if i == len(PIECES) - 1:
                await anyio.to_thread.run_sync(
                    self.release.wait, self.hold_timeout, abandon_on_cancel=True
                )
            await asyncio.sleep(self.delay)
            call.produced += 1
            await event(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        await event(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (call.body.get("stream_options") or {}).get("include_usage"):
            await event(chunk([], usage=usage))
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeChatUpstream:
        config = uvicorn.Config(self, host=LOOPBACK, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not tcp_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("FakeChatUpstream did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

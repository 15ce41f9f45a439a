"""Server-sent events from an upstream to the client, one event at a time.

Each event is forwarded as soon as it is complete (nothing is buffered beyond one event).
The final usage chunk (``choices: []`` with ``usage``, sent when ``stream_options.
include_usage`` is set) is where the tokens are read; when the gateway asked for it on the
client's behalf, it is not forwarded. :class:`RelayResponse` watches for the client going
away while the upstream is silent, and then cancels the relay, which closes the upstream
connection: a client that disconnects stops the upstream call.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from hanzo_contract.errors import error_body
from inference_gateway.metrics import UPSTREAM_ERRORS

_BOUNDARY = re.compile(rb"\r?\n\r?\n")

OnUsage = Callable[[dict[str, Any]], Awaitable[None]]
OnNothing = Callable[[], Awaitable[None]]


def _has_content(chunk: object) -> bool:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        return False
    deltas = [c.get("delta") for c in choices if isinstance(c, dict)]
    return any(isinstance(d, dict) and d.get("content") for d in deltas)


@dataclass
class UsageWatch:
    """What the relay saw of ``usage`` (at most one charge per stream)."""

    client_asked: bool
    on_usage: OnUsage
    #: charged when the stream ends without a usage chunk (see :meth:`settle`)
    prompt_estimate: int = 0
    seen: bool = False
    #: content chunks relayed so far (a streamed chunk carries about one token)
    chunks: int = 0
    #: called instead when the stream ends without usage and without content
    on_nothing: OnNothing | None = None

    async def settle(self) -> None:
        """A stream cut off before its usage chunk (the client left, or the upstream broke
        off) is still charged: the prompt estimate and one token per chunk relayed, so
        leaving just before the end is no way around a token quota. One that produced
        nothing at all is released (``on_nothing``)."""
        if not self.seen:
            self.seen = True
            if self.chunks == 0 and self.on_nothing is not None:
                await self.on_nothing()
                return
            await self.on_usage(
                {"prompt_tokens": self.prompt_estimate, "completion_tokens": self.chunks}
            )

    async def event(self, raw: bytes) -> bytes | None:
        """The event to forward (``None``: drop it)."""
        data = b"".join(line[5:].lstrip() for line in raw.splitlines() if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            return raw
        try:
            chunk = json.loads(data)
        except ValueError:
            return raw
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if not isinstance(usage, dict):
            choices = chunk.get("choices") if isinstance(chunk, dict) else None
            if isinstance(choices, list) and any(
                isinstance(c, dict)
                and isinstance(c.get("delta"), dict)
                and c["delta"].get("content")
                for c in choices
            ):
                self.chunks += 1
            return raw
        if not self.seen:
            self.seen = True
            await self.on_usage(usage)
        if not self.client_asked and not chunk.get("choices"):
            return None
        return raw


async def relay_events(
    upstream: httpx.Response, watch: UsageWatch, upstream_name: str
) -> AsyncIterator[bytes]:
    buffer = b""
    try:
        async for piece in upstream.aiter_bytes():
            buffer += piece
            while (match := _BOUNDARY.search(buffer)) is not None:
                raw, buffer = buffer[: match.end()], buffer[match.end() :]
                out = await watch.event(raw)
                if out is not None:
                    yield out
        if buffer.strip():
            yield buffer
    except httpx.HTTPError as exc:
        UPSTREAM_ERRORS.labels(upstream_name, "upstream_error").inc()
        # headers are sent already: the error goes out as a last event, in our body
        body = error_body("upstream_error", f"the model upstream broke off: {type(exc).__name__}")
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    finally:
        # shielded: runs when the client's departure cancels the relay
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
            await watch.settle()


class RelayResponse(StreamingResponse):
    """A streaming response that always listens for the client's disconnect (Starlette
    relies on a failing send under ASGI 2.4, which never comes while the upstream is
    silent)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()

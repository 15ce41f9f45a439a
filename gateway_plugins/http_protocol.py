"""uvicorn's httptools protocol, answering the auth endpoints in place.

Every request a gateway serves asks the plugin first, so the auth answer is the one hot
path. Served as ASGI, a cached key's answer cost three times its decision: an asyncio task
and a turn of the loop, two ASGI messages, and uvicorn checking each of the answer's ~15
headers with two regular expressions (the signed identity alone is 600 bytes). This
protocol keeps everything uvicorn does up to the parsed request (the parser, keep-alive,
pipelining, limits, shutdown), then asks the app's ``answer_now`` (``ForwardAuthApp``):

- an answer (status, headers, body): written at once, the headers checked as uvicorn
  checks them (no control character in a value, no separator in a name: one regular
  expression over them all), the connection kept or closed as uvicorn would;
- an ASGI app (the decision had to wait, on the sidecar or Redis): run as uvicorn runs any
  app;
- ``None`` (metrics, health, token charges, a traced request, ``HEAD``): the app itself,
  as ASGI.

Only when the connection has no answer in progress, is not applying back-pressure, and
the app is ours unwrapped (``proxy_headers`` off: the plugin judges forwarded headers by
its own trusted proxies).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from hanzo_contract.errors import error_body

log = logging.getLogger(__name__)

_FAILED = json.dumps(error_body("internal_error", "the auth service failed")).encode()
#: what is answered instead of an answer whose headers could split it
_UNSAFE = (
    500,
    [(b"content-type", b"application/json"), (b"content-length", str(len(_FAILED)).encode())],
    _FAILED,
)


def encode_answer(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool
) -> bytes | None:
    """The answer as HTTP/1.1 bytes; ``None`` when a header could split the answer (a
    control character in a value, a separator in a name), which uvicorn would refuse."""
    if HEADER_VALUE_RE.search(b"\t".join(value for _, value in headers)) or HEADER_RE.search(
        b"-".join(name for name, _ in headers)
    ):
        return None
    lines = [STATUS_LINE[status]]
    for name, value in headers:
        lines += (name.lower(), b": ", value, b"\r\n")
    if close:
        lines.append(b"connection: close\r\n")
    lines += (b"\r\n", body)
    return b"".join(lines)


class AuthHttpProtocol(HttpToolsProtocol):
    """``uvicorn.run(..., http=AuthHttpProtocol)``: see the module's docstring."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        answer_now = getattr(app, "answer_now", None)
        if answer_now is None or self.flow.write_paused or self.transport.is_closing():
            return super()._start_asgi_task(cycle, app)
        answer = answer_now(cycle.scope)
        if answer is None:
            return super()._start_asgi_task(cycle, app)
        if not isinstance(answer, tuple):  # the decision waits: the rest runs as a task
            return super()._start_asgi_task(cycle, answer)
        status, headers, body = answer
        if self.server_state.default_headers:
            headers = [*self.server_state.default_headers, *headers]
        close = not cycle.keep_alive
        data = encode_answer(status, headers, body, close)
        if data is None:
            log.error("an auth answer had a header that could split it: answered 500")
            data = encode_answer(*_UNSAFE, close)
        cycle.response_started = cycle.response_complete = True
        self.transport.write(data)  # type: ignore[arg-type]
        if close:
            self.transport.close()
        cycle.on_response()  # counts it, arms keep-alive, starts a pipelined request

"""uvicorn's httptools protocol, answering the auth endpoints in place.

Every request a gateway serves asks the plugin first, so the auth answer is the one hot
path. Served as ASGI, a cached key's answer cost three times its decision: an asyncio task
and a turn of the loop, two ASGI messages, and uvicorn checking each of the answer's ~15
headers with two regular expressions (the signed identity alone is 600 bytes). This
protocol keeps everything uvicorn does up to the parsed request (the parser, keep-alive,
pipelining, limits, shutdown), then asks the app's ``answer_now`` (``ForwardAuthApp``):

- an answer (status, header lines, body): written at once, the connection kept or closed
  as uvicorn would. The lines were checked as uvicorn checks headers (no control
  character in a value, no separator in a name: one regular expression over them all,
  :func:`header_lines`), the signed identity's once per identity, not per answer;
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
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from hanzo_contract.errors import error_body

#: an answer written in place: status, its header lines (``name: value\r\n`` each, checked
#: by :func:`header_lines`), body
InPlaceAnswer = tuple[int, bytes, bytes]


class UnsafeHeader(ValueError):
    """A header uvicorn would refuse: a control character in a value (it could end the
    header and start another), a separator in a name."""


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``name: value\r\n`` for each header, the name lower-cased, as uvicorn writes them;
    raises :class:`UnsafeHeader` where uvicorn would refuse one."""
    if HEADER_VALUE_RE.search(b"\t".join(value for _, value in headers)) or HEADER_RE.search(
        b"-".join(name for name, _ in headers)
    ):
        raise UnsafeHeader("a header could split the answer")
    lines = []
    for name, value in headers:
        lines += (name.lower(), b": ", value, b"\r\n")
    return b"".join(lines)


_FAILED = json.dumps(error_body("internal_error", "the auth service failed")).encode()
#: what is answered instead of an answer whose headers could split it
UNSAFE_ANSWER: InPlaceAnswer = (
    500,
    header_lines(
        [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_FAILED))]
    ),
    _FAILED,
)


def encode_answer(status: int, lines: bytes, body: bytes, close: bool) -> bytes:
    """The answer as HTTP/1.1 bytes: status line, checked header lines, body."""
    if close:
        return b"".join((STATUS_LINE[status], lines, b"connection: close\r\n\r\n", body))
    return b"".join((STATUS_LINE[status], lines, b"\r\n", body))


class AuthHttpProtocol(HttpToolsProtocol):
    """``uvicorn.run(..., http=AuthHttpProtocol)``: see the module's docstring."""

    #: an answer in place is being written; a pipelined request it starts (through
    #: ``on_response``) runs as a task, so a long pipeline never nests answers in answers
    _answering = False

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # a request starts: no keep-alive timer may close the connection under it (uvicorn
        # starts one only after disarming it; an answer in place arms it mid-read)
        self._unset_keepalive_if_required()
        answer_now = getattr(app, "answer_now", None)
        if (
            answer_now is None
            or self._answering
            or self.flow.write_paused
            or self.transport.is_closing()
        ):
            return super()._start_asgi_task(cycle, app)
        answer = answer_now(cycle.scope)
        if answer is None:
            return super()._start_asgi_task(cycle, app)
        if not isinstance(answer, tuple):  # the decision waits: the rest runs as a task
            return super()._start_asgi_task(cycle, answer)
        status, lines, body = answer
        if self.server_state.default_headers:
            lines = header_lines(self.server_state.default_headers) + lines
        close = not cycle.keep_alive
        data = encode_answer(status, lines, body, close)
        cycle.response_started = cycle.response_complete = True
        self._answering = True
        try:
            self.transport.write(data)  # type: ignore[arg-type]
            if close:
                self.transport.close()
            cycle.on_response()  # counts it, arms keep-alive, starts a pipelined request
        finally:
            self._answering = False

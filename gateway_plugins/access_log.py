"""The plugin's access line: one JSON line per request, built by hand, written in batches.

Issue 12 needs the request id in every part's log, so the line stays on by default; the
plugin is on every request's path, so the line must cost next to nothing. Through
``logging`` (a ``LogRecord``, the shared formatter's dict, ``json.dumps``, the redaction
pass over the whole line, a handler lock and one ``write`` per request) it cost about as
much as the decision itself. Here it is a cached per-second time prefix, a constant head
and the few fields that vary, each escaped by ``json``'s C string encoder: the same shape
as :class:`hanzo_contract.jsonlog.JsonFormatter`'s lines (``time``, ``level``,
``service``, ``request_id``, ``logger``, ``message``, then the fields), and lines are
buffered and written together when ``max_lines`` have gathered or ``flush_seconds`` after
the first, not one ``write`` per request.

Nothing is lost at shutdown: the app's lifespan flushes the log as it ends (uvicorn ends
it on SIGTERM and SIGINT before it exits), and an ``atexit`` hook flushes on any other
normal exit. A SIGKILL loses at most ``flush_seconds`` of lines.

Fields: ``method`` and ``path`` of the request judged (the original one, for the auth
endpoints; the query is never logged, and the path passes through
:func:`~hanzo_contract.jsonlog.redact`), ``route`` (the route table's pattern), ``status``
(the decision's: a 429 stays a 429 although nginx is answered 403), ``code`` (``allow``,
``invalid_key``, ...), ``key_id`` (the public id, never the key), ``org``,
``latency_ms`` (from the request's arrival in the app to its answer's last byte handed to
the server).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from hanzo_contract.jsonlog import redact, utc_seconds
from hanzo_contract.request_id import current_request_id

log = logging.getLogger(__name__)

#: the ``logger`` of every access line
LOGGER = "gateway_plugins.access"

#: ``json.dumps`` of one string, in C; ASCII-only, so that no character a client put in a
#: path (U+2028, U+0085, ...) can split the line for a reader that splits on more than "\n"
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _quoter(cut: int | None = None) -> Callable[[str | None], str]:
    """A field as the line writes it (``_quote``, after :func:`redact` and a cut for the
    request's method and path), remembered: behind a gateway the same few paths, methods,
    routes and keys repeat, and redacting and quoting them was a third of the line's
    cost. Bounded (least recently used first out). Holds paths as the request named them,
    in memory only; the line gets the redacted form."""

    @functools.lru_cache(maxsize=4096)
    def quoted(value: str | None) -> str:
        if value is None:
            return "null"
        return _quote(value if cut is None else redact(value[:cut]))

    return quoted


class AccessLog:
    """Builds the access lines and writes them to ``stream`` (default: ``sys.stderr`` at
    write time, where :func:`hanzo_contract.jsonlog.configure` sends every other line)."""

    def __init__(
        self,
        service: str = "gateway",
        stream: TextIO | None = None,
        *,
        max_lines: int = 256,
        flush_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``clock``: seconds since the epoch for ``time``; ``timer``: the clock the
        caller's ``started`` was read on, for ``latency_ms``."""
        self._stream = stream
        self._max_lines = max_lines
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._timer = timer
        self._lines: list[str] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        self._head = f'+00:00", "level": "info", "service": {_quote(service)}, "request_id": '
        self._logger = f', "logger": {_quote(LOGGER)}, "message": '
        self.written = 0  # lines handed to the stream, for tests and operators
        self._method = _quoter(16)
        self._path = _quoter(2048)
        self._label = _quoter()  # route, code, key id, org: quoted as they are

    def request(
        self,
        method: str,
        path: str,
        status: int,
        started: float,
        route: str | None = None,
        code: str | None = None,
        key_id: str | None = None,
        org: str | None = None,
    ) -> None:
        """One line for a request that arrived at ``started`` (on ``timer``) and has just
        been answered; ``path`` without its query."""
        latency = self._timer() - started
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, '{"time": "' + utc_seconds(second)
        request_id = current_request_id()
        method = self._method(method)
        path = self._path(path)
        label = self._label
        # the message repeats method, path and status as the shared shape wants one
        self._lines.append(
            f"{self._stamp}.{int((now - second) * 1000):03d}{self._head}"
            f'{_text(request_id)}{self._logger}{method[:-1]} {path[1:-1]} {status}", '
            f'"method": {method}, "path": {path}, "route": {label(route)}, '
            f'"status": {status}, "code": {label(code)}, "key_id": {label(key_id)}, '
            f'"org": {label(org)}, "latency_ms": {latency * 1e3:.3f}}}\n'
        )
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._flush_at is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to wait on: write now
                self.flush()
                return
            self._flush_at = loop.call_later(self._flush_seconds, self.flush)

    def flush(self) -> None:
        """Write every buffered line, in one ``write``."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream or sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError) as exc:  # a closed or full stream: never the request's
            log.warning("access lines lost: %s", exc)
            return
        self.written += len(lines)

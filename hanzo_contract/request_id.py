"""The request id every part shares: taken from the gateway, made when missing, kept in a
context variable for the request's logs, error bodies and outgoing calls, and returned.

The gateway (nginx ``$request_id``, Caddy's uuid) makes the id when a client sends none or
an unsafe one; a service reached directly makes its own the same way, so a log line or an
error body never lacks one. Raw ASGI, so the plugin's hot path pays a dict lookup and a
header, nothing more.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hanzo_contract.headers import REQUEST_ID, safe_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER = REQUEST_ID.lower().encode("latin-1")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hanzo_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being served in this task, if any."""
    return _current.get()


def new_request_id() -> str:
    """32 hex characters, the shape of nginx's ``$request_id``."""
    return uuid.uuid4().hex


def request_id_or_new(sent: str | None) -> str:
    """``sent`` (the caller's ``X-Request-Id``) when it is a plain token (charset and
    length), else a new id: a client's id is never echoed into a log or a body unless it
    is safe."""
    return safe_request_id(sent) or new_request_id()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """:func:`request_id_or_new` of the first ``X-Request-Id`` in raw ASGI headers."""
    for name, value in headers:
        if name.lower() == _HEADER:
            return request_id_or_new(value.decode("latin-1"))
    return new_request_id()


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    """Make ``request_id`` the current request's, for a raw ASGI hot path that answers
    ``X-Request-Id`` itself (the gateway plugin's auth endpoints: the middleware's work
    without its ``send`` wrapper); hand the token to :func:`release_request_id` after."""
    return _current.set(request_id)


def release_request_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


def propagation_headers() -> dict[str, str]:
    """What an outgoing call carries so the next part logs under the same id."""
    request_id = _current.get()
    return {REQUEST_ID: request_id} if request_id else {}


async def propagate(request: Any) -> None:
    """An httpx ``request`` event hook: the current request id (and, when tracing is on,
    the W3C ``traceparent``) on every outgoing call of a client that installs it."""
    request_id = _current.get()
    if request_id and REQUEST_ID not in request.headers:
        request.headers[REQUEST_ID] = request_id
    from hanzo_contract import telemetry  # no import cycle; cheap when tracing is off

    if telemetry.enabled():
        telemetry.inject(request.headers)


class RequestIdMiddleware:
    """Sets the request id for the request's task and answers it as ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # an outer middleware (direct mode: before the auth check) already chose it
        request_id = _current.get() or request_id_of(scope["headers"])
        token = _current.set(request_id)
        raw = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message["headers"] = [*headers, (_HEADER, raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)

"""The decision core as ASGI middleware, for a service that runs without a gateway.

The same core as the forward-auth service (keys through the sidecar, Casdoor JWTs, route
table, limits), applied in-process: an allowed request reaches the wrapped app with the
client's identity headers replaced by ours and a signed assertion, exactly as a gateway
would forward it; a denied one gets the core's JSON error. The wrapped app keeps trusting
only the assertion, so one code path serves both deployments.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_plugins.core import DecisionCore
from gateway_plugins.decision import Decision, deny
from gateway_plugins.request import AuthRequest, lower_headers
from hanzo_contract.headers import replace_identity_headers_raw

log = logging.getLogger(__name__)


class InlineAuth:
    def __init__(self, app: ASGIApp, core: DecisionCore, open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.core = core
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        headers = lower_headers(scope["headers"])
        uri = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            uri += "?" + scope["query_string"].decode("latin-1")
        client = scope.get("client")
        request = AuthRequest(scope["method"].upper(), uri, headers, client[0] if client else None)
        try:
            decision = await self.core.decide(request)
        except Exception:
            log.exception("decision failed")
            decision = deny(500, "internal_error", "the auth check failed")
        if not decision.allowed:
            await _refuse(decision, send)
            return
        scope = dict(scope)
        scope["headers"] = replace_identity_headers_raw(scope["headers"], decision.headers)
        await self.app(scope, receive, _with_headers(send, decision.client_headers))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the app's lifespan through, then close the core's clients on shutdown."""
        try:
            await self.app(scope, receive, send)
        finally:
            await self.core.aclose()


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    """``send`` that adds the decision's client headers (RateLimit) to the app's answer."""
    if not extra:
        return send
    raw = [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    names = {name for name, _ in raw}

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
            message = {**message, "headers": [*kept, *raw]}
        await send(message)

    return sending


async def _refuse(decision: Decision, send: Send) -> None:
    body = json.dumps(decision.body(), separators=(",", ":")).encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

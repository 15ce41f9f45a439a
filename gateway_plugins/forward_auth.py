"""The forward-auth HTTP service every HTTP-calling gateway can use.

Endpoints (any method):

- ``/auth``: APISIX ``forward-auth``, Traefik ForwardAuth, Caddy ``forward_auth`` (original
  request in ``X-Forwarded-Method`` / ``X-Forwarded-Uri``, which those gateways set
  themselves). Answers 200, 400, 401, 403, 429 or 503.
- ``/auth/nginx``: nginx ``auth_request`` (original request in ``X-Original-Method`` /
  ``X-Original-URI`` only: nginx passes client headers to the subrequest, so a client's
  ``X-Forwarded-Uri`` must not count). nginx only understands 2xx, 401 and 403 (anything
  else becomes a 500): a 429 or 503 is answered as 403 with the real status in
  ``X-Hanzo-Status``, which the shipped nginx config turns back into a 429/503.
- ``/envoy/<original path>``: Envoy ``ext_authz`` HTTP service with ``path_prefix: /envoy``
  (Envoy keeps the original method and appends the original path).
- ``POST /v1/tokens/reserve`` and ``POST /v1/tokens/charge`` (``hanzo_contract.tokens``):
  the inference gateway holds a call's estimated tokens before calling its upstream, then
  settles them to what the call spent; the charge token as bearer; off when no charge
  token is set.
- ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` (the sidecar answers).

Allow answers carry the identity headers (and the signed assertion) for the gateway to
copy upstream; deny answers carry the shared JSON error body, also compacted into
``X-Hanzo-Error`` for gateways that can only forward headers.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway_plugins import eager, metrics
from gateway_plugins.access_log import AccessLog
from gateway_plugins.core import DecisionCore
from gateway_plugins.decision import ERROR_HEADER, STATUS_HEADER, Decision, deny
from gateway_plugins.http_protocol import (
    UNSAFE_ANSWER,
    InPlaceAnswer,
    UnsafeHeader,
    header_lines,
)
from gateway_plugins.limiter import LimiterUnavailable
from gateway_plugins.request import CREDENTIAL_HEADERS, AuthRequest, lower_asgi_headers
from hanzo_contract import telemetry
from hanzo_contract.errors import error_body
from hanzo_contract.forwarded import DEFAULT_TRUSTED_PROXIES, ClientAddress
from hanzo_contract.headers import DECISION_ID, REQUEST_ID, safe_request_id
from hanzo_contract.request_id import (
    RequestIdMiddleware,
    bind_request_id,
    current_request_id,
    release_request_id,
    request_id_or_new,
)
from hanzo_contract.request_metrics import StatusCapture
from hanzo_contract.telemetry import TracingMiddleware
from hanzo_contract.tokens import (
    TOKEN_CHARGE_PATH,
    TOKEN_RESERVE_PATH,
    TokenCharge,
    TokenReservation,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: an answer's status, raw headers and body
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

ModelT = TypeVar("ModelT", bound=BaseModel)

ENVOY_PREFIX = "/envoy"
_DECISION_ID = DECISION_ID.lower()
_REQUEST_ID_NAME = REQUEST_ID.lower()
_MISSING = "the gateway sent no original method/URI (X-Forwarded-Method/-Uri or X-Original-*)"


#: the request headers the auth endpoints read: each dialect's original request, the
#: client address, the credential; no other header is decoded
_READ = frozenset(
    name.encode()
    for name in (
        "x-original-method",
        "x-original-uri",
        "x-forwarded-method",
        "x-forwarded-uri",
        "x-forwarded-for",
        "x-real-ip",
        _DECISION_ID,
        _REQUEST_ID_NAME,
        *CREDENTIAL_HEADERS,
    )
)
_REQUEST_ID = _REQUEST_ID_NAME.encode()
_STATUS = STATUS_HEADER.lower().encode()
_ERROR = ERROR_HEADER.lower().encode()


class _EncodedIdentities:
    """The identity headers of allowed decisions (with ``X-Hanzo-Status: 200``), encoded
    once, and their header lines as the in-place answer writes them, checked once (``None``
    when a value could split the answer). The core hands out the same dict for a principal
    on a route until it re-signs (``core._identity``), so both are remembered by the dict's
    id, checked by identity (the dict is kept, so its id is not reused). Bounded: cleared
    when full."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: dict[int, tuple[dict[str, str], list[tuple[bytes, bytes]], bytes | None]]
        self._seen = {}

    def encode(self, headers: dict[str, str]) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        found = self._seen.get(id(headers))
        if found is not None and found[0] is headers:
            return found[1], found[2]
        encoded = [(k.encode(), v.encode()) for k, v in headers.items()]
        encoded.append((_STATUS, b"200"))
        try:
            lines: bytes | None = header_lines(encoded)
        except UnsafeHeader:
            lines = None
        if len(self._seen) >= self._size:
            self._seen.clear()
        self._seen[id(headers)] = (headers, encoded, lines)
        return encoded, lines


def _client_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in decision.client_headers.items()]


def _render(
    decision: Decision,
    nginx: bool,
    request_id: str | None = None,
    identities: _EncodedIdentities | None = None,
) -> Answer:
    """Status, raw headers and body of the answer to the gateway; the body names the
    gateway's request id (``X-Request-Id``, when it is a plain token)."""
    status = decision.status
    if decision.allowed:
        headers = [*(identities or _EncodedIdentities()).encode(decision.headers)[0]]
        headers += _client_headers(decision)
        if telemetry.enabled() and (parent := telemetry.traceparent()):
            headers.append((b"traceparent", parent.encode()))  # the upstream's parent span
        headers.append((b"content-length", b"0"))
        return 200, headers, b""
    headers = [(k.encode(), v.encode()) for k, v in decision.headers.items()]
    body = decision.body_bytes(request_id)
    headers += [
        (_STATUS, str(status).encode()),
        (_ERROR, body),
        (b"cache-control", b"no-store"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if nginx and status not in (401, 403):
        status = 403
    return status, headers, body


def _render_lines(
    decision: Decision, nginx: bool, request_id: str, identities: _EncodedIdentities
) -> InPlaceAnswer:
    """:func:`_render` for the in-place answer (no tracing: a traced request is served as
    ASGI), with ``X-Request-Id``: status, checked header lines, body. An allowed answer
    reuses its identity's lines, checked when they were first encoded. Raises
    :class:`UnsafeHeader`."""
    rid = (_REQUEST_ID, request_id.encode("latin-1"))
    if decision.allowed:
        lines = identities.encode(decision.headers)[1]
        if lines is None:
            raise UnsafeHeader("an identity header value could split the answer")
        rest = [*_client_headers(decision), (b"content-length", b"0"), rid]
        return 200, lines + header_lines(rest), b""
    status, headers, body = _render(decision, nginx, request_id, identities)
    headers.append(rid)
    return status, header_lines(headers), body


#: :meth:`ClientAddress.resolve`: the client address a request is judged by
Resolve = Callable[[str | None, str | None, str | None], str | None]


def _auth_request(
    scope: Scope, headers: dict[str, str], endpoint: str, addresses: Resolve
) -> AuthRequest | None:
    """The original request (``headers``: the ones in ``_READ``, lower-cased); its client
    address from forwarded headers only when the gateway that asks is a trusted proxy."""
    decision_id = None
    if endpoint == "envoy":
        method = scope["method"]
        uri = scope["path"][len(ENVOY_PREFIX) :] or "/"
        if scope.get("query_string"):
            uri += "?" + scope["query_string"].decode("latin-1")
    elif endpoint == "nginx":
        # only what the shipped nginx config sets; a client's X-Forwarded-* is ignored
        method = headers.get("x-original-method", "")
        uri = headers.get("x-original-uri", "")
        # set by the shipped config to nginx's own $request_id over whatever a client sent
        # (proxy_set_header replaces it); no other gateway's config does, so no other
        # dialect reads it: a client repeating an id must never get an uncounted request
        decision_id = safe_request_id(headers.get(_DECISION_ID))
    else:
        method = headers.get("x-forwarded-method", "")
        uri = headers.get("x-forwarded-uri", "")
    if not method or not uri:
        return None
    peer = scope.get("client")
    client_ip = addresses(
        peer[0] if peer else None, headers.get("x-forwarded-for"), headers.get("x-real-ip")
    )
    return AuthRequest(method.upper(), uri, headers, client_ip, decision_id)


def _endpoint(path: str) -> str | None:
    """Which auth dialect ``path`` asks for (``nginx``, ``envoy``, ``auth``), if any."""
    if path == "/auth/nginx":
        return "nginx"
    if path == "/auth":
        return "auth"
    if path == ENVOY_PREFIX or path.startswith(ENVOY_PREFIX + "/"):
        return "envoy"
    return None


class ForwardAuthApp:
    """Raw ASGI on the hot path (the auth endpoints); Starlette for everything else."""

    def __init__(
        self,
        core: DecisionCore,
        rest: Starlette,
        addresses: ClientAddress | None = None,
        access: AccessLog | None = None,
    ) -> None:
        self.core = core
        self._rest = rest
        # remembered: behind a gateway the same few (peer, X-Forwarded-For, X-Real-IP)
        # triples repeat, and parsing them as IP addresses was a tenth of a hot request
        self._addresses: Resolve = functools.lru_cache(maxsize=4096)(
            (addresses or ClientAddress()).resolve
        )
        self._access = access
        self._identities = _EncodedIdentities()
        # the request id for every answer and log line; a span per request when tracing
        self._served = RequestIdMiddleware(TracingMiddleware(self._dispatch, "gateway"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not telemetry.enabled():
            endpoint = _endpoint(scope["path"])
            if endpoint is not None:  # the hot path: answers its request id itself
                answer = self._start(scope, endpoint, in_place=False)
                assert callable(answer)
                await answer(scope, receive, send)
                return
        await self._served(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            started = time.perf_counter()
            endpoint = _endpoint(scope["path"])
            if endpoint is not None:
                await self._decide(scope, send, endpoint, started)
                return
            if self._access is not None:
                await self._logged(scope, receive, send, started)
                return
        await self._rest(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        """Everything but the auth endpoints (metrics, health, token charges), with its
        access line: the status is whatever the app answered (500 if it answered nothing)."""
        sent = StatusCapture(send)
        try:
            await self._rest(scope, receive, sent)
        finally:
            assert self._access is not None
            self._access.request(scope["method"], scope["path"], sent.status, started)

    def answer_now(self, scope: Scope) -> InPlaceAnswer | ASGIApp | None:
        """An auth request answered in place, for :class:`~gateway_plugins.http_protocol.
        AuthHttpProtocol`: the answer's status, checked header lines and body when the
        decision needed no I/O (a cached key: no task, no ASGI messages); an ASGI app that
        finishes it when it did wait (a cache miss); ``None`` for anything else (served as
        ASGI)."""
        if scope["method"] == "HEAD" or telemetry.enabled():
            return None
        endpoint = _endpoint(scope["path"])
        if endpoint is None:
            return None
        return self._start(scope, endpoint, self.core.runs_in_place)

    def _start(self, scope: Scope, endpoint: str, in_place: bool) -> InPlaceAnswer | ASGIApp:
        """An auth request outside :class:`RequestIdMiddleware` (tracing off): its request
        id bound and answered as the middleware would; its decision run at once when
        ``in_place`` (the answer when it needed no I/O), else, or when it waits, the ASGI
        app that finishes it."""
        started = time.perf_counter()
        headers = lower_asgi_headers(scope["headers"], _READ)
        request_id = request_id_or_new(headers.get(_REQUEST_ID_NAME))
        token = bind_request_id(request_id)
        try:
            request = _auth_request(scope, headers, endpoint, self._addresses)
            judging = self._judge(request)
            judged: Awaitable[Decision] = judging
            if in_place:
                done, outcome = eager.start(judging)
                if done:
                    assert isinstance(outcome, Decision)
                    answer = self._lines(outcome, endpoint, request_id)
                    self._log(scope, request, outcome, started)
                    return answer
                judged = outcome  # it waits (a cache miss asks the sidecar): ends in a task
            return functools.partial(self._finish, judged, request, endpoint, request_id, started)
        finally:
            release_request_id(token)

    async def _finish(
        self,
        pending: Awaitable[Decision],
        request: AuthRequest | None,
        endpoint: str,
        request_id: str,
        started: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """The ASGI app that answers a decision :meth:`_start` began (and that waited, when
        it was run in place)."""
        token = bind_request_id(request_id)
        try:
            decision = await pending
            await self._send(scope, send, request, decision, endpoint, request_id, True, started)
        finally:
            release_request_id(token)

    async def _decide(self, scope: Scope, send: Send, endpoint: str, started: float) -> None:
        """One auth answer inside :class:`RequestIdMiddleware` (tracing on), which binds
        and answers the request id."""
        headers = lower_asgi_headers(scope["headers"], _READ)
        request = _auth_request(scope, headers, endpoint, self._addresses)
        decision = await self._judge(request)
        request_id = current_request_id()
        await self._send(scope, send, request, decision, endpoint, request_id, False, started)

    async def _judge(self, request: AuthRequest | None) -> Decision:
        if request is None:
            return deny(400, "missing_original_request", _MISSING)
        try:
            return await self.core.decide(request)
        except Exception:
            log.exception("decision failed")
            return deny(500, "internal_error", "the auth service failed")

    def _lines(self, decision: Decision, endpoint: str, request_id: str) -> InPlaceAnswer:
        try:
            return _render_lines(decision, endpoint == "nginx", request_id, self._identities)
        except UnsafeHeader:
            log.error("an auth answer had a header that could split it: answered 500")
            return UNSAFE_ANSWER

    def _answer(
        self, decision: Decision, endpoint: str, request_id: str | None, own_id: bool
    ) -> Answer:
        status, raw, body = _render(decision, endpoint == "nginx", request_id, self._identities)
        if own_id:
            raw.append((_REQUEST_ID, request_id.encode("latin-1")))  # type: ignore[union-attr]
        return status, raw, body

    async def _send(
        self,
        scope: Scope,
        send: Send,
        request: AuthRequest | None,
        decision: Decision,
        endpoint: str,
        request_id: str | None,
        own_id: bool,
        started: float,
    ) -> None:
        status, raw, body = self._answer(decision, endpoint, request_id, own_id)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        self._log(scope, request, decision, started)

    def _log(
        self, scope: Scope, request: AuthRequest | None, decision: Decision, started: float
    ) -> None:
        if self._access is None:
            return
        if request is None:  # the line names the endpoint the gateway called
            method, path = scope["method"], scope["path"]
        else:
            method, path = request.method, request.path
        principal = decision.principal
        self._access.request(
            method,
            path,
            decision.status,
            started,
            decision.route,
            decision.code,
            principal.key_id if principal else None,
            principal.organization if principal else None,
        )


Endpoint = Callable[[Request], Awaitable[Response]]


def _token_endpoints(core: DecisionCore, token: str) -> tuple[Endpoint, Endpoint]:
    """``reserve`` and ``charge``: the inference gateway's, behind the charge token."""
    expected = f"Bearer {token}".encode()

    async def read(request: Request, model: type[ModelT]) -> ModelT | Response:
        sent = request.headers.get("authorization", "").encode()
        if not token or not hmac.compare_digest(sent, expected):
            body = error_body("invalid_charge_token", "a valid charge token is required")
            return JSONResponse(body, status_code=401)
        raw = await request.body()
        if len(raw) > 64 * 1024:
            return JSONResponse(error_body("body_too_large", "charge body too large"), 413)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            return JSONResponse(
                error_body("invalid_charge", "invalid token charge", details), status_code=400
            )

    def unavailable() -> Response:
        body = error_body("limiter_unavailable", "token counters unavailable, retry later")
        return JSONResponse(body, status_code=503)

    async def reserve(request: Request) -> Response:
        asked = await read(request, TokenReservation)
        if isinstance(asked, Response):
            return asked
        result, reserved = await core.reserve(asked)
        if result.allowed:
            return JSONResponse(reserved.model_dump(mode="json"), headers=result.headers())
        if result.code == "limiter_unavailable":
            return unavailable()
        message = "the call's token estimate exceeds the token quota left until its reset"
        body = error_body("token_quota_exceeded", message)
        return JSONResponse(body, status_code=429, headers=result.headers())

    async def charge(request: Request) -> Response:
        charged = await read(request, TokenCharge)
        if isinstance(charged, Response):
            return charged
        try:
            await core.charge(charged)
        except LimiterUnavailable:
            return unavailable()
        return JSONResponse({"charged": charged.total}, status_code=202)

    return reserve, charge


def create_app(
    core: DecisionCore,
    charge_token: str = "",
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES,
    access: AccessLog | None = None,
) -> ForwardAuthApp:
    """The forward-auth app; ``charge_token`` opens the token charge endpoint (the inference
    gateway's), ``trusted_proxies``: the gateways whose X-Forwarded-For counts, ``access``:
    one line per request (flushed when the app's lifespan ends)."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Ready when what a decision needs answers (the sidecar: every cache miss asks
        it); 503 with the shared error body naming what does not."""
        checks = await core.readiness()
        if all(state == "ok" for state in checks.values()):
            return JSONResponse({"status": "ok", **checks})
        body = error_body("not_ready", "a dependency of the auth service is down", checks)
        return JSONResponse(body, status_code=503)

    async def not_found(_: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        code = "not_found" if status == 404 else "method_not_allowed"
        return JSONResponse(error_body(code, "no such endpoint"), status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await core.aclose()
            finally:
                if access is not None:
                    access.flush()

    reserve, charge = _token_endpoints(core, charge_token)
    rest = Starlette(
        routes=[
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(TOKEN_RESERVE_PATH, reserve, methods=["POST"]),
            Route(TOKEN_CHARGE_PATH, charge, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    return ForwardAuthApp(core, rest, ClientAddress(trusted_proxies), access)

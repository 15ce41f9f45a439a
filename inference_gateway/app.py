"""The inference gateway's routes: ``/v1/chat/completions``, ``/v1/embeddings``,
``/v1/models`` (OpenAI-compatible), behind the gateway plugin, which already checked the
key, the ``inference:invoke`` permission, rate limits and token quotas.

Here: the caller's model allow-list, the upstream chosen by model name, the call's token
estimate reserved in the plugin's quota store before the upstream is called (refused with
429 if it does not fit), streaming relayed event by event, and the reservation settled to
the tokens the upstream reports, once per call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hanzo_contract.principal import Principal
from hanzo_contract.request_id import RequestIdMiddleware, propagate
from hanzo_contract.request_metrics import RequestMetricsMiddleware
from hanzo_contract.telemetry import TracingMiddleware
from inference_gateway.auth import Authenticator
from inference_gateway.charge import TokenCharger
from inference_gateway.errors import (
    InferenceError,
    http_error_handler,
    inference_error_handler,
    server_error_handler,
    upstream_error,
)
from inference_gateway.estimate import Estimate, chat_estimate, embeddings_estimate
from inference_gateway.metrics import (
    REQUEST_SECONDS,
    REQUESTS,
    RESERVATIONS,
    TOKENS_RESERVED,
    TOKENS_SETTLED,
    UPSTREAM_ERRORS,
    UPSTREAM_SECONDS,
)
from inference_gateway.ops import OPS_ROUTES
from inference_gateway.relay import RelayResponse, UsageWatch, relay_events
from inference_gateway.settings import InferenceSettings
from inference_gateway.upstreams import Upstream, UpstreamTable

log = logging.getLogger("inference_gateway")


def _count(usage: Any, name: str) -> int:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass
class Metered:
    """One call's token reservation, settled exactly once: to the upstream's reported
    usage, or released when the call produced nothing."""

    charger: TokenCharger
    principal: Principal
    model: str
    estimate: Estimate
    reservation: str | None
    settled: bool = False

    async def settle(self, usage: Any) -> None:
        if self.settled:
            return
        self.settled = True
        if not isinstance(usage, dict):
            # an answer without usage: it stays charged at what was held for it
            log.warning("upstream reported no usage for %s; charged the estimate", self.model)
            prompt, completion = self.estimate.prompt, self.estimate.completion
        else:
            prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        TOKENS_SETTLED.labels(self.model, "prompt").inc(prompt)
        TOKENS_SETTLED.labels(self.model, "completion").inc(completion)
        if self.reservation is not None:
            RESERVATIONS.labels(self.model, "settled").inc()
        # shielded: a client that leaves as the answer ends cancels the relay, and a charge
        # cut off then was never made (its reservation expires and is handed back: free)
        with anyio.CancelScope(shield=True):
            await self.charger.charge(
                self.principal, self.model, prompt, completion, self.reservation
            )

    async def release(self) -> None:
        """Nothing was produced: the reservation is handed back whole."""
        if self.settled:
            return
        self.settled = True
        if self.reservation is not None:
            RESERVATIONS.labels(self.model, "released").inc()
            with anyio.CancelScope(shield=True):
                await self.charger.charge(self.principal, self.model, 0, 0, self.reservation)


class InferenceGateway:
    def __init__(
        self,
        settings: InferenceSettings,
        authenticator: Authenticator,
        charger: TokenCharger,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.auth = authenticator
        self.charger = charger
        self.upstreams = UpstreamTable(settings.upstreams)
        timeout = httpx.Timeout(
            settings.read_timeout_seconds, connect=settings.connect_timeout_seconds
        )
        self.http = httpx.AsyncClient(
            timeout=timeout, transport=transport, event_hooks={"request": [propagate]}
        )

    async def _body(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
        raw = b""
        async for piece in request.stream():
            raw += piece
            if len(raw) > limit:
                raise InferenceError(413, "body_too_large", f"request body exceeds {limit} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            raise InferenceError(400, "invalid_json", "request body is not JSON") from None
        if not isinstance(body, dict):
            raise InferenceError(400, "invalid_body", "request body must be a JSON object")
        return body

    async def _send(
        self, upstream: Upstream, path: str, body: dict[str, Any], assertion: str
    ) -> httpx.Response:
        """The upstream's answer, begun (its body still to read); the time it took and any
        failure counted under the upstream's name."""
        name = upstream.spec.name
        request = self.http.build_request(
            "POST", upstream.url(path), json=body, headers=upstream.headers(assertion)
        )
        start = time.perf_counter()
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TimeoutException:
            UPSTREAM_ERRORS.labels(name, "upstream_timeout").inc()
            raise InferenceError(504, "upstream_timeout", "the model upstream timed out") from None
        except httpx.HTTPError as exc:
            UPSTREAM_ERRORS.labels(name, "upstream_unavailable").inc()
            raise InferenceError(
                502, "upstream_unavailable", f"model upstream unreachable: {type(exc).__name__}"
            ) from None
        finally:
            UPSTREAM_SECONDS.labels(name, path).observe(time.perf_counter() - start)
        if response.status_code >= 400:
            UPSTREAM_ERRORS.labels(name, "upstream_error").inc()
            raw = await response.aread()
            await response.aclose()
            raise upstream_error(response.status_code, raw)
        return response

    async def _json_answer(
        self, upstream: Upstream, response: httpx.Response, call: Metered
    ) -> Response:
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            UPSTREAM_ERRORS.labels(upstream.spec.name, "upstream_error").inc()
            await call.release()
            raise InferenceError(502, "upstream_error", "the model upstream broke off") from None
        finally:
            await response.aclose()
        try:
            usage = json.loads(raw).get("usage")
        except (ValueError, AttributeError):
            UPSTREAM_ERRORS.labels(upstream.spec.name, "upstream_error").inc()
            await call.release()
            raise InferenceError(502, "upstream_error", "the model upstream sent no JSON") from None
        await call.settle(usage)
        return Response(raw, response.status_code, media_type="application/json")

    async def _metered(self, principal: Principal, model: str, estimate: Estimate) -> Metered:
        """The call's estimate held against the principal's token quotas (or a 429)."""
        try:
            reservation = await self.charger.reserve(principal, model, estimate.total)
        except InferenceError as exc:
            outcome = "refused" if exc.status == 429 else "unavailable"
            RESERVATIONS.labels(model, outcome).inc()
            raise
        if reservation is not None:
            TOKENS_RESERVED.labels(model).inc(estimate.total)
        return Metered(self.charger, principal, model, estimate, reservation)

    async def _call(
        self, upstream: Upstream, path: str, body: dict[str, Any], assertion: str, call: Metered
    ) -> httpx.Response:
        """The upstream's answer; a call that never started hands its reservation back."""
        try:
            return await self._send(upstream, path, body, assertion)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await call.release()
            raise

    # ------------------------------------------------------------------ routes
    async def chat(self, request: Request) -> Response:
        principal, assertion = self.auth.caller(request)
        body = await self._body(request)
        model = body.get("model")
        upstream = self.upstreams.for_model(model, principal)
        assert isinstance(model, str)
        stream = body.get("stream") is True
        options = body.get("stream_options")
        client_asked = isinstance(options, dict) and options.get("include_usage") is True
        if stream and not client_asked:
            # ask for the final usage chunk; the client that did not ask never sees it
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}  # fmt: skip
        default_cap = upstream.spec.default_max_tokens or self.settings.default_max_tokens
        call = await self._metered(principal, model, chat_estimate(body, default_cap))
        response = await self._call(upstream, "/chat/completions", body, assertion, call)
        if not stream:
            return await self._json_answer(upstream, response, call)
        watch = UsageWatch(
            client_asked=client_asked,
            on_usage=call.settle,
            on_nothing=call.release,
            # what a cut-off stream is charged for its prompt
            prompt_estimate=call.estimate.prompt,
        )
        return RelayResponse(
            relay_events(response, watch, upstream.spec.name),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def embeddings(self, request: Request) -> Response:
        principal, assertion = self.auth.caller(request)
        body = await self._body(request)
        model = body.get("model")
        upstream = self.upstreams.for_model(model, principal)
        assert isinstance(model, str)
        call = await self._metered(principal, model, embeddings_estimate(body))
        response = await self._call(upstream, "/embeddings", body, assertion, call)
        return await self._json_answer(upstream, response, call)

    async def models(self, request: Request) -> Response:
        principal, _ = self.auth.caller(request)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "hanzo"}
            for m in self.upstreams.models(principal)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.charger.aclose()


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    settings: InferenceSettings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    settings = settings or InferenceSettings()
    gateway = InferenceGateway(
        settings,
        Authenticator(settings.resolved_public_key()),
        TokenCharger(settings.plugin_url, settings.charge_token.get_secret_value()),
        transport,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.aclose()

    routes = [
        Route("/v1/chat/completions", gateway.chat, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *OPS_ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TracingMiddleware, service="inference"),
            Middleware(
                RequestMetricsMiddleware, routes=routes, requests=REQUESTS, seconds=REQUEST_SECONDS
            ),
        ],
        lifespan=lifespan,
        exception_handlers={
            InferenceError: inference_error_handler,
            HTTPException: http_error_handler,
            Exception: server_error_handler,
        },
    )
    app.state.gateway = gateway
    return app

"""The inference gateway's routes: ``/v1/chat/completions``, ``/v1/embeddings``,
``/v1/models`` (OpenAI-compatible), behind the gateway plugin, which already checked the
key, the ``inference:invoke`` permission, rate limits and token quotas.

Here: the caller's model allow-list, the upstream chosen by model name, streaming relayed
event by event, and the tokens the upstream reports charged back to the plugin's quota
store once per call.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hanzo_contract.principal import Principal
from hanzo_contract.request_id import RequestIdMiddleware, propagate
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
from inference_gateway.relay import RelayResponse, UsageWatch, relay_events
from inference_gateway.settings import InferenceSettings
from inference_gateway.upstreams import Upstream, UpstreamTable

log = logging.getLogger("inference_gateway")


def _count(usage: Any, name: str) -> int:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


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
        request = self.http.build_request(
            "POST", upstream.url(path), json=body, headers=upstream.headers(assertion)
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TimeoutException:
            raise InferenceError(504, "upstream_timeout", "the model upstream timed out") from None
        except httpx.HTTPError as exc:
            raise InferenceError(
                502, "upstream_unavailable", f"model upstream unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            raw = await response.aread()
            await response.aclose()
            raise upstream_error(response.status_code, raw)
        return response

    async def _json_answer(
        self, response: httpx.Response, principal: Principal, model: str
    ) -> Response:
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raise InferenceError(502, "upstream_error", "the model upstream broke off") from None
        finally:
            await response.aclose()
        try:
            usage = json.loads(raw).get("usage")
        except (ValueError, AttributeError):
            raise InferenceError(502, "upstream_error", "the model upstream sent no JSON") from None
        await self._charge(principal, model, usage)
        return Response(raw, response.status_code, media_type="application/json")

    async def _charge(self, principal: Principal, model: str, usage: Any) -> None:
        prompt = _count(usage, "prompt_tokens")
        completion = _count(usage, "completion_tokens")
        if not isinstance(usage, dict):
            log.warning("upstream reported no usage for %s; nothing charged", model)
            return
        await self.charger.charge(principal, model, prompt, completion)

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
        response = await self._send(upstream, "/chat/completions", body, assertion)
        if not stream:
            return await self._json_answer(response, principal, model)

        async def on_usage(usage: dict[str, Any]) -> None:
            await self._charge(principal, model, usage)

        watch = UsageWatch(
            client_asked=client_asked,
            on_usage=on_usage,
            # about four characters a token: what a cut-off stream is charged for its prompt
            prompt_estimate=len(json.dumps(body.get("messages", ""))) // 4,
        )
        return RelayResponse(
            relay_events(response, watch),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def embeddings(self, request: Request) -> Response:
        principal, assertion = self.auth.caller(request)
        body = await self._body(request)
        model = body.get("model")
        upstream = self.upstreams.for_model(model, principal)
        assert isinstance(model, str)
        response = await self._send(upstream, "/embeddings", body, assertion)
        return await self._json_answer(response, principal, model)

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

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", gateway.chat, methods=["POST"]),
            Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
            Route("/v1/models", gateway.models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TracingMiddleware, service="inference"),
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

"""OpenTelemetry traces across the parts, off unless the standard ``OTEL_*`` variables say
otherwise.

On when ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or an OTLP endpoint
is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` is not ``true``. Off, nothing of OpenTelemetry is imported: the
middleware passes each request straight on, :func:`span` hands back one shared null
context, and outgoing calls carry only the request id. On, each service opens a server
span per request under the caller's W3C ``traceparent``, a span per backend operation, and
injects ``traceparent`` into its own calls, so one request gives one trace from the gateway
to the backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from hanzo_contract.request_id import ASGIApp, Message, Receive, Scope, Send, current_request_id

_NULL = contextlib.nullcontext()
_state: dict[str, Any] = {"on": None, "provider": None}


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables turn tracing on."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    """Whether spans are being made (set once by :func:`setup` or :func:`use_provider`)."""
    return bool(_state["on"])


def setup(service: str, env: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK's tracer provider with the OTLP exporter when the environment asks
    for it (a process calls this once, at start); whether tracing is on."""
    if _state["on"] is not None:
        return bool(_state["on"])
    if not wanted(env):
        _state["on"] = False
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = env.get("OTEL_SERVICE_NAME") or service
    resource = Resource.create({"service.name": name}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.update(on=True, provider=provider)
    return True


def use_provider(provider: Any | None) -> None:
    """Trace into ``provider`` (a test's, with the in-memory exporter); ``None``: off."""
    _state.update(on=provider is not None, provider=provider)


def _tracer(service: str) -> Any:
    from opentelemetry import trace

    provider = _state["provider"]
    return (provider or trace.get_tracer_provider()).get_tracer(f"hanzo.{service}")


def span(
    name: str, service: str = "hanzo", **attributes: Any
) -> contextlib.AbstractContextManager[Any]:
    """A span for one backend operation under the current one; a null context when off."""
    if not _state["on"]:
        return _NULL
    return _tracer(service).start_as_current_span(name, attributes=attributes or None)


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current ``traceparent`` into ``headers`` (an outgoing call's)."""
    from opentelemetry import propagate

    propagate.inject(headers)


def traceparent() -> str | None:
    """The current span's ``traceparent``, for a gateway to pass on to the upstream."""
    if not _state["on"]:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


class TracingMiddleware:
    """A server span per HTTP request, child of the caller's ``traceparent``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _state["on"]:
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        parent = propagate.extract(carrier)
        method, path = scope["method"], scope["path"]
        with _tracer(self.service).start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "service.part": self.service,
                "hanzo.request_id": current_request_id() or "",
            },
        ) as current:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_status)

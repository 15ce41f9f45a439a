"""Kong plugin ``hanzo-auth``: the decision core in Kong's access phase.

Settings come from ``HANZO_GATEWAY_*`` env vars / ``HANZO_CONFIG`` like the forward-auth
service; the plugin's own config only picks a route table per Kong route/service.
On allow it overwrites every identity header on the upstream request (so a client-sent
``X-User-Id`` never passes); on deny it ends the request with the shared JSON error body.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from gateway_plugins.build import build_core
from gateway_plugins.core import DecisionCore
from gateway_plugins.decision import deny
from gateway_plugins.kong.loop import LoopThread
from gateway_plugins.request import AuthRequest, lower_headers
from gateway_plugins.settings import GatewaySettings

log = logging.getLogger(__name__)

NAME = "hanzo-auth"
version = "0.1.0"
#: run before Kong's own auth plugins would (key-auth is 1250)
priority = 1300
Schema = (
    {"routes_file": {"type": "string", "required": False}},
    {"decision_timeout_seconds": {"type": "number", "default": 5}},
)

_lock = threading.Lock()
_loop: LoopThread | None = None
_cores: dict[str | None, DecisionCore] = {}


def _core_for(routes_file: str | None) -> tuple[LoopThread, DecisionCore]:
    """One core per route table, all on one loop, built on first use."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = LoopThread()
        core = _cores.get(routes_file)
        if core is None:
            settings = GatewaySettings()
            if routes_file is not None:
                settings = settings.model_copy(update={"routes_file": Path(routes_file)})
            core = _cores[routes_file] = _loop.run(_build(settings), 30)
        return _loop, core


async def _build(settings: GatewaySettings) -> DecisionCore:
    """Built on the shared loop, so its clients bind to that loop."""
    return build_core(settings)


def _data(result: Any) -> Any:
    """PDK calls answer ``(data, err)`` in Lua style, ``data`` otherwise."""
    if isinstance(result, tuple) and len(result) == 2:
        data, err = result
        if err:
            raise RuntimeError(f"Kong PDK error: {err}")
        return data
    return result


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config or {}

    def access(self, kong: Any) -> None:
        loop, core = _core_for(self.config.get("routes_file"))
        request = AuthRequest(
            method=str(_data(kong.request.get_method())),
            uri=str(_data(kong.request.get_path_with_query())),
            headers=lower_headers((_data(kong.request.get_headers()) or {}).items()),
            client_ip=str(_data(kong.client.get_forwarded_ip()) or "") or None,
        )
        timeout = float(self.config.get("decision_timeout_seconds") or 5)
        try:
            decision = loop.run(core.decide(request), timeout)
        except Exception:  # a stuck or failing core is our fault: 503, never an open door
            log.exception("hanzo-auth decision failed")
            decision = deny(503, "auth_unavailable", "auth plugin unavailable, retry later")
        if decision.allowed:
            # every identity header is set (empty ones too): this is the strip and the set
            _data(kong.service.request.set_headers(decision.headers))
            if decision.client_headers:
                # the RateLimit headers go on the answer Kong sends the client
                _data(kong.response.set_headers(decision.client_headers))
            return
        headers = {**decision.headers, "Content-Type": "application/json"}
        kong.response.exit(decision.status, decision.body_bytes().decode(), headers)

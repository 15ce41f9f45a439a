"""``ApisixForwardAuthFake``: a named stand-in for APISIX, which cannot run here.

It does, for the deployed ``apisix.yaml``, what APISIX's ``forward-auth`` plugin does
(apache/apisix ``apisix/plugins/forward-auth.lua``): send the original method/URI as
``X-Forwarded-*`` plus the listed ``request_headers`` to the auth URI; on a status >= 300
answer the client with that status, body and the listed ``client_headers``; otherwise set
each ``upstream_headers`` entry on the upstream request from the answer (removing it when
the answer lacks it) and proxy to the route's upstream. Hosts come from the yaml and are
mapped to loopback ports by the caller.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml


@dataclass
class FakeResponse:
    status_code: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class ApisixForwardAuthFake:
    def __init__(self, apisix_yaml: Path, hosts: dict[str, str]) -> None:
        """``hosts`` maps ``name:port`` of the yaml to the ``127.0.0.1:port`` it runs on."""
        config = yaml.safe_load(apisix_yaml.read_text())
        self.plugins = {p["id"]: p["plugins"] for p in config["plugin_configs"]}
        self.upstreams = {u["id"]: next(iter(u["nodes"])) for u in config["upstreams"]}
        self.routes = sorted(config["routes"], key=lambda r: -r.get("priority", 0))
        self.hosts = hosts

    def _addr(self, node: str) -> str:
        return self.hosts[node]

    def _route(self, path: str) -> dict[str, Any]:
        for route in self.routes:
            if any(fnmatch.fnmatchcase(path, uri) for uri in route["uris"]):
                return route
        raise LookupError(path)

    def request(
        self,
        method: str,
        uri: str,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> FakeResponse:
        headers = dict(headers or {})
        route = self._route(urlsplit(uri).path)
        upstream = f"http://{self._addr(self.upstreams[route['upstream_id']])}"
        with httpx.Client(timeout=30) as client:
            conf = self.plugins.get(route.get("plugin_config_id", ""), {}).get("forward-auth")
            if conf is not None:
                auth_uri = urlsplit(conf["uri"])
                auth_headers = {
                    "X-Forwarded-Proto": "http",
                    "X-Forwarded-Method": method,
                    "X-Forwarded-Host": "gateway.test",
                    "X-Forwarded-Uri": uri,
                    "X-Forwarded-For": "127.0.0.1",
                }
                lower = {k.lower(): v for k, v in headers.items()}
                for name in conf.get("request_headers", []):
                    if name.lower() in lower:
                        auth_headers.setdefault(name, lower[name.lower()])
                answer = client.request(
                    conf.get("request_method", "GET"),
                    f"http://{self._addr(auth_uri.netloc)}{auth_uri.path}",
                    headers=auth_headers,
                )
                if answer.status_code >= 300:
                    wanted = [h for h in conf["client_headers"] if h in answer.headers]
                    passed = httpx.Headers({h: answer.headers[h] for h in wanted})
                    return FakeResponse(answer.status_code, passed, answer.content)
                for name in conf.get("upstream_headers", []):
                    for existing in [k for k in headers if k.lower() == name.lower()]:
                        del headers[existing]
                    if name in answer.headers:
                        headers[name] = answer.headers[name]
            reply = client.request(method, upstream + uri, headers=headers, json=json)
            return FakeResponse(reply.status_code, reply.headers, reply.content)

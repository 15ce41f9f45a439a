"""``FakeApisixAdmin`` and ``FakeKongAdmin``: named stand-ins for the APISIX and Kong Admin
APIs, which cannot run here (no APISIX/OpenResty or Kong on this machine).

Each is a real HTTP server on a loopback port that stores objects by id and refuses what
the projects' Admin API references document as invalid: APISIX v3 (``X-API-KEY``; routes
with exactly one of ``uri``/``uris``, methods from its list, ``upstream_id`` and
``plugin_config_id`` naming stored objects; upstreams with a known ``type`` and
``host:port`` nodes with integer weights; ids of ``[a-zA-Z0-9-_.]{1,64}``; answers
``{"key", "value"}``), Kong 3 (services from a ``url``, routes under a stored service with
``paths`` starting ``/`` or ``~`` (a ``~`` path must be a valid regex), plugins by UUID with
an enabled ``name`` and a ``config`` object; unknown fields are a schema violation; the
server adds its defaults, as Kong does). Every call is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HTTP_METHODS = {
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    "PURGE",
}
_APISIX_ID = re.compile(r"[a-zA-Z0-9\-_.]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9.\-]+:[0-9]{1,5}")


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _FakeAdmin:
    """The HTTP plumbing both fakes share; subclasses validate and shape the answers."""

    key_header = ""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                fake.calls.append((method, self.path))
                if fake.key and self.headers.get(fake.key_header) != fake.key:
                    self._answer(401, {"message": "Invalid authentication credentials"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length)) if length else None
                    self._answer(*fake.handle(method, self.path, body))
                except Refused as exc:
                    self._answer(exc.status, {"message": exc.message})
                except (ValueError, TypeError) as exc:
                    self._answer(400, {"message": f"bad request: {exc}"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def puts(self) -> int:
        return sum(1 for method, _ in self.calls if method == "PUT")

    def start(self) -> _FakeAdmin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError


def _only(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise Refused(400, f"{what}: additional properties forbidden: {sorted(unknown)}")


class FakeApisixAdmin(_FakeAdmin):
    key_header = "X-API-KEY"
    KINDS = ("routes", "upstreams", "plugin_configs")
    ROUTE_FIELDS = {
        "uri", "uris", "methods", "upstream_id", "plugin_config_id", "priority", "name", "desc",
        "plugins", "host", "hosts", "status",
    }  # fmt: skip
    PLUGINS = {"forward-auth", "client-control"}

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/apisix/admin/(\w+)/([^/]+)", path)
        if not m or m.group(1) not in self.KINDS:
            raise Refused(404, "404 Route Not Found")
        kind, ident = m.groups()
        key = f"/apisix/{kind}/{ident}"
        if method == "GET":
            if key not in self.objects:
                raise Refused(404, "Key not found")
            return 200, {"key": key, "value": self.objects[key]}
        if not _APISIX_ID.fullmatch(ident):
            raise Refused(400, f"invalid id {ident!r}")
        if not isinstance(body, dict):
            raise Refused(400, "invalid JSON body")
        getattr(self, f"_check_{kind}")(body)
        created = key not in self.objects
        self.objects[key] = {**body, "id": ident, "create_time": 1, "update_time": 1}
        return (201 if created else 200), {"key": key, "value": self.objects[key]}

    def _check_routes(self, body: dict[str, Any]) -> None:
        _only(body, self.ROUTE_FIELDS, "route")
        if ("uri" in body) == ("uris" in body):
            raise Refused(400, "route: exactly one of uri, uris")
        uris = body.get("uris") or [body.get("uri")]
        if not all(isinstance(u, str) and u.startswith("/") for u in uris):
            raise Refused(400, "route: uri must be a path starting with /")
        if not set(body.get("methods", [])) <= HTTP_METHODS:
            raise Refused(400, f"route: methods must be of {sorted(HTTP_METHODS)}")
        if "upstream_id" in body and f"/apisix/upstreams/{body['upstream_id']}" not in self.objects:
            raise Refused(
                400, f"failed to fetch upstream info by upstream id [{body['upstream_id']}]"
            )
        config = body.get("plugin_config_id")
        if config is not None and f"/apisix/plugin_configs/{config}" not in self.objects:
            raise Refused(400, f"failed to fetch plugin config info by plugin config id [{config}]")
        if "priority" in body and not isinstance(body["priority"], int):
            raise Refused(400, "route: priority must be an integer")

    def _check_upstreams(self, body: dict[str, Any]) -> None:
        _only(body, {"type", "nodes", "name", "desc", "timeout", "retries", "scheme"}, "upstream")
        if body.get("type") not in {"roundrobin", "chash", "ewma", "least_conn"}:
            raise Refused(400, "upstream: type must be roundrobin, chash, ewma or least_conn")
        nodes = body.get("nodes")
        if not isinstance(nodes, dict) or not nodes:
            raise Refused(400, "upstream: nodes must be a non-empty object")
        for node, weight in nodes.items():
            if not _NODE.fullmatch(node) or not isinstance(weight, int) or weight < 0:
                raise Refused(400, f"upstream: invalid node {node}: {weight}")

    def _check_plugin_configs(self, body: dict[str, Any]) -> None:
        _only(body, {"plugins", "desc", "labels"}, "plugin config")
        plugins = body.get("plugins")
        if not isinstance(plugins, dict) or not plugins:
            raise Refused(400, "plugin config: plugins must be a non-empty object")
        unknown = set(plugins) - self.PLUGINS
        if unknown:
            raise Refused(400, f"unknown plugin {sorted(unknown)}")
        auth = plugins.get("forward-auth")
        if auth is not None and not isinstance(auth.get("uri"), str):
            raise Refused(400, "forward-auth: property uri is required")
        control = plugins.get("client-control")
        if control is not None and not isinstance(control.get("max_body_size"), int):
            raise Refused(400, "client-control: max_body_size must be an integer")


class FakeKongAdmin(_FakeAdmin):
    key_header = "Kong-Admin-Token"
    PLUGINS = {"hanzo-auth", "request-size-limiting"}
    SERVICE_DEFAULTS = {"retries": 5, "connect_timeout": 60000, "read_timeout": 60000}

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/services/([^/]+)(?:/(routes|plugins)/([^/]+))?", path)
        if not m:
            raise Refused(404, "Not found")
        service, kind, ident = m.groups()
        key = path
        if method == "GET":
            if key not in self.objects:
                raise Refused(404, "Not found")
            return 200, self.objects[key]
        if not isinstance(body, dict):
            raise Refused(400, "invalid JSON body")
        created = key not in self.objects
        if kind is None:
            _only(body, {"url", "name", "retries", "connect_timeout", "read_timeout"}, "service")
            url = re.fullmatch(r"(https?)://([^/:]+):([0-9]+)(/.*)?", body.get("url", ""))
            if not url:
                raise Refused(400, "schema violation (url: missing or invalid)")
            stored = {
                **self.SERVICE_DEFAULTS,
                "protocol": url.group(1), "host": url.group(2), "port": int(url.group(3)),
                "path": url.group(4), "name": service, "url": body["url"],
            }  # fmt: skip
        else:
            parent = self.objects.get(f"/services/{service}")
            if parent is None:
                raise Refused(404, f"service {service} not found")
            stored = self._route(body, ident) if kind == "routes" else self._plugin(body, ident)
            stored["service"] = {"id": parent["id"]}
        previous = self.objects.get(key, {})
        stored["id"] = previous.get("id", str(uuid.uuid4())) if kind != "plugins" else ident
        stored["created_at"] = 1
        self.objects[key] = stored
        return (201 if created else 200), stored

    def _route(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        _only(body, {"paths", "methods", "strip_path", "preserve_host", "hosts", "name"}, "route")
        paths = body.get("paths")
        if not isinstance(paths, list) or not paths:
            raise Refused(400, "schema violation (paths: required)")
        for path in paths:
            if not isinstance(path, str) or not path.startswith(("/", "~")):
                raise Refused(400, f"schema violation (paths: {path!r} should start with: / or ~)")
            if path.startswith("~"):
                try:
                    re.compile(path[1:])
                except re.error as exc:
                    raise Refused(400, f"schema violation (paths: invalid regex {exc})") from None
        if not set(body.get("methods", [])) <= HTTP_METHODS:
            raise Refused(400, "schema violation (methods: invalid value)")
        for flag in ("strip_path", "preserve_host"):
            if flag in body and not isinstance(body[flag], bool):
                raise Refused(400, f"schema violation ({flag}: expected a boolean)")
        return {
            "strip_path": True,
            "preserve_host": False,
            **body,
            "name": name,
            "protocols": ["http", "https"],
        }

    def _plugin(self, body: dict[str, Any], ident: str) -> dict[str, Any]:
        _only(body, {"name", "config", "enabled"}, "plugin")
        try:
            uuid.UUID(ident)
        except ValueError:
            raise Refused(
                400, f"schema violation (id: expected a valid UUID, got {ident})"
            ) from None
        if body.get("name") not in self.PLUGINS:
            raise Refused(400, f"schema violation (name: plugin '{body.get('name')}' not enabled)")
        config = body.get("config")
        if not isinstance(config, dict):
            raise Refused(400, "schema violation (config: expected a record)")
        units = {"megabytes", "kilobytes", "bytes"}
        if body["name"] == "request-size-limiting" and config.get("size_unit") not in units:
            raise Refused(400, "schema violation (config.size_unit)")
        return {"enabled": True, **body, "config": {**config}}

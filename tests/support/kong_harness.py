"""A TEST HARNESS that plays Kong's side of the plugin-server MessagePack RPC. Not Kong.

Kong cannot run here, so the tests start our real plugin server (``python -m
gateway_plugins.kong``, the PDK's own server code) and talk to its Unix socket the way
Kong does: ``plugin.StartInstance``, ``plugin.HandleEvent``, then one ``plugin.Step`` per
PDK call the plugin makes, answering each from a scripted request. What the plugin asked
Kong to do (set upstream headers, exit with a response) is recorded for assertions.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import msgpack


@dataclass
class KongRequest:
    method: str
    path: str
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    client_ip: str = "127.0.0.1"


@dataclass
class KongOutcome:
    #: ``kong.service.request.set_headers`` arguments (what the upstream would get)
    upstream_headers: dict[str, str] = field(default_factory=dict)
    #: ``kong.response.exit`` arguments, if the plugin ended the request
    exit_status: int | None = None
    exit_body: str | None = None
    exit_headers: dict[str, str] = field(default_factory=dict)
    #: ``kong.response.set_headers`` arguments (added to the answer the client gets)
    client_headers: dict[str, str] = field(default_factory=dict)
    pdk_calls: list[str] = field(default_factory=list)


class KongRpcHarness:
    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(socket_path)
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self._msgid = 0

    def call(self, method: str, *args: Any) -> Any:
        self._msgid += 1
        self._sock.sendall(msgpack.packb([0, self._msgid, method, list(args)]))
        while True:
            for message in self._unpacker:
                kind, msgid, error, result = message
                assert kind == 1 and msgid == self._msgid, message
                if error:
                    raise RuntimeError(f"plugin server error: {error}")
                return result
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("plugin server closed the socket")
            self._unpacker.feed(chunk)

    def start_instance(self, name: str, config: dict[str, Any]) -> int:
        answer = self.call("plugin.StartInstance", {"Name": name, "Config": json.dumps(config)})
        return int(answer["Id"])

    def access(self, instance_id: int, request: KongRequest) -> KongOutcome:
        """Run the access phase for one request, answering each PDK call."""
        outcome = KongOutcome()
        reply = self.call("plugin.HandleEvent", {"InstanceId": instance_id, "EventName": "access"})
        while True:
            data, event_id = reply["Data"], reply["EventId"]
            if data == "ret":
                return outcome
            method, args = data["Method"], data.get("Args") or []
            outcome.pdk_calls.append(method)
            if method == "kong.response.exit":
                outcome.exit_status = int(args[0])
                outcome.exit_body = args[1] if len(args) > 1 else None
                outcome.exit_headers = dict(args[2]) if len(args) > 2 and args[2] else {}
                return outcome
            answer = self._answer(method, args, request, outcome)
            reply = self.call("plugin.Step", {"EventId": event_id, "Data": answer})

    @staticmethod
    def _answer(method: str, args: list[Any], request: KongRequest, outcome: KongOutcome) -> Any:
        if method == "kong.request.get_method":
            return request.method
        if method == "kong.request.get_path_with_query":
            return request.path
        if method == "kong.request.get_headers":
            return {k.lower(): v for k, v in request.headers.items()}
        if method == "kong.client.get_forwarded_ip":
            return request.client_ip
        if method == "kong.service.request.set_headers":
            outcome.upstream_headers.update(args[0])
            return None
        if method == "kong.response.set_headers":
            outcome.client_headers.update(args[0])
            return None
        raise AssertionError(f"the harness does not implement {method}")

    def close(self) -> None:
        self._sock.close()

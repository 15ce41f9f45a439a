"""The outcome of one decision, in a form every adapter can render."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hanzo_contract.errors import error_body
from hanzo_contract.principal import Principal

#: set on every answer so adapters (nginx) can recover the real status and body
STATUS_HEADER = "X-Hanzo-Status"
ERROR_HEADER = "X-Hanzo-Error"


@dataclass(slots=True)
class Decision:
    status: int
    code: str
    #: response headers for the client on deny; identity headers for the upstream on allow
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    principal: Principal | None = None
    #: headers for the client on allow (RateLimit, RateLimit-Policy): the gateway copies
    #: them onto the upstream's answer, never onto the request to the upstream
    client_headers: dict[str, str] = field(default_factory=dict)
    #: the route table pattern the request matched (``/v1/memory/{id}``), for the access
    #: line; ``None`` when no route matched or the path was refused before matching
    route: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status < 300

    def body(self, request_id: str | None = None) -> dict[str, object]:
        return error_body(self.code, self.message, request_id=request_id)

    def body_bytes(self, request_id: str | None = None) -> bytes:
        return json.dumps(self.body(request_id), separators=(",", ":")).encode()


def allow(
    identity_headers: dict[str, str],
    principal: Principal | None,
    code: str,
    client_headers: dict[str, str] | None = None,
) -> Decision:
    return Decision(
        200, code, identity_headers, principal=principal, client_headers=client_headers or {}
    )


def deny(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Decision:
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", f'Bearer error="{code}"')
    return Decision(status, code, extra, message)

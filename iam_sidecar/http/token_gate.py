"""The gate in front of Casdoor's token endpoint: grants that name a user without proving
anything never reach it.

Casdoor (v1.1000.0) hands out a token for a bare user name on three grants:
- the device-code grant with a ``username`` field and no device code
  (``controllers/token.go`` passes ``username`` to ``GetImplicitToken``);
- the ``token`` and ``id_token`` grant types, which take ``username`` the same way.

The gateway in front of Casdoor (``deploy/nginx/casdoor.conf.template``) routes
``/api/login/oauth/access_token`` here. A device-code grant must carry its device code and
no user name, and the two implicit grant types are refused. Every other request goes on to
Casdoor unchanged: same body, same query, the client's own credentials, never ours.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
from starlette.requests import Request
from starlette.responses import Response

from hanzo_contract.signin import DEVICE_CODE_GRANT
from iam_sidecar.errors import InvalidRequest
from iam_sidecar.http.util import MAX_BODY_BYTES, sidecar_state

#: where the gateway sends Casdoor's ``POST /api/login/oauth/access_token``
TOKEN_GUARD_PATH = "/casdoor/token"  # noqa: S105 (a path)
CASDOOR_TOKEN_PATH = "/api/login/oauth/access_token"  # noqa: S105 (a path)
#: grant types that mint a token for a user name alone
REFUSED_GRANTS = frozenset({"token", "id_token"})
#: what of the client's request the token endpoint reads besides the body and query
_FORWARDED = ("content-type", "authorization", "accept", "x-forwarded-for", "user-agent")


def _fields(request: Request, raw: bytes) -> dict[str, str]:
    """The request's fields as Casdoor reads them: the query, then a form or JSON body."""
    fields = {k: v for k, v in request.query_params.items()}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise InvalidRequest("request body is not valid JSON") from None
        if isinstance(body, dict):
            fields |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    else:
        try:
            form = parse_qs(raw.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise InvalidRequest("request body is not valid form data") from None
        fields |= {k: v[-1] for k, v in form.items()}
    return fields


def check_grant(fields: dict[str, str]) -> None:
    """Refuse the grants that would mint a token for a user name alone."""
    grant = fields.get("grant_type", "")
    if grant in REFUSED_GRANTS:
        raise InvalidRequest(f"grant type {grant!r} is not accepted")
    if grant == DEVICE_CODE_GRANT:
        if fields.get("username"):
            raise InvalidRequest("a device-code grant takes its device_code, never a user name")
        if not fields.get("device_code"):
            raise InvalidRequest("a device-code grant needs its device_code")


async def guarded_token(request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    check_grant(_fields(request, raw))
    state = sidecar_state(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    async with httpx.AsyncClient(base_url=state.casdoor.base_url, timeout=15) as casdoor:
        answer = await casdoor.post(
            CASDOOR_TOKEN_PATH, content=raw, params=request.query_params, headers=headers
        )
    passed = {"content-type": answer.headers.get("content-type", "application/json")}
    return Response(answer.content, status_code=answer.status_code, headers=passed)

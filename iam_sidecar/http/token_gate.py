"""The gate in front of Casdoor's token endpoint: grants that name a user without proving
anything never reach it.

Casdoor (v1.1000.0) hands out a token for a bare user name on three grants:
- the device-code grant with a ``username`` field and no device code
  (``controllers/token.go`` passes ``username`` to ``GetImplicitToken``);
- the ``token`` and ``id_token`` grant types, which take ``username`` the same way.

The gateway in front of Casdoor (``deploy/nginx/casdoor.conf.template``) routes
``/api/login/oauth/access_token`` here. A device-code grant must carry its device code and
no user name, and the two implicit grant types are refused.

Casdoor reads a field from the query or a form body (the first of several values), from
a multipart form, and from any body that parses as JSON (keys matched in any case, only
for fields still empty). A gate that reads the request another way can be walked around
(a grant in the query under a harmless JSON one, a field given twice, ``Grant_Type``, JSON
sent as text: each gave a token for a bare user name). So the gate reads the query and a
form or JSON body alone, refuses a token field given twice or in another case, and sends
Casdoor a form it builds from the checked fields, with no query: Casdoor reads exactly
what was checked. The client's own credentials go on (its Basic header), never ours.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from hanzo_contract.signin import DEVICE_CODE_GRANT
from iam_sidecar.errors import InvalidRequest
from iam_sidecar.http.casdoor_gate import json_object_pairs, send_on, single_names
from iam_sidecar.http.util import MAX_BODY_BYTES, sidecar_state

#: where the gateway sends Casdoor's ``POST /api/login/oauth/access_token``
TOKEN_GUARD_PATH = "/casdoor/token"  # noqa: S105 (a path)
CASDOOR_TOKEN_PATH = "/api/login/oauth/access_token"  # noqa: S105 (a path)
#: grant types that mint a token for a user name alone
REFUSED_GRANTS = frozenset({"token", "id_token"})
#: the fields Casdoor's token endpoint reads (``controllers/token.go``): the only ones sent
TOKEN_FIELDS = frozenset(
    {
        "client_id", "client_secret", "grant_type", "code", "code_verifier", "scope",
        "nonce", "username", "password", "tag", "avatar", "refresh_token", "device_code",
    }
)  # fmt: skip
_FOLDED = {name.casefold(): name for name in TOKEN_FIELDS}
#: what of the client's request goes on besides the fields (its Basic credentials)
_FORWARDED = ("authorization", "accept", "x-forwarded-for", "user-agent")
_FORM = "application/x-www-form-urlencoded"


def _body_pairs(kind: str, raw: bytes) -> list[tuple[str, Any]]:
    """A form's or a JSON object's fields, in order; nothing else is read as a body."""
    if not raw.strip():
        return []
    if kind == "application/json":
        return json_object_pairs(raw)
    if kind == _FORM:
        try:
            return parse_qsl(raw.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise InvalidRequest("request body is not valid form data") from None
    raise InvalidRequest(f"a token request's body is {_FORM} or application/json")


def _fields(request: Request, raw: bytes) -> dict[str, str]:
    """The request's token fields, from the query and a form or JSON body, each given once
    and in its own name: what Casdoor is sent (:func:`guarded_token`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    given = single_names([*request.query_params.multi_items(), *_body_pairs(kind, raw)])
    fields: dict[str, str] = {}
    for name, value in given.items():
        known = _FOLDED.get(name.casefold())
        if known is None:
            continue  # Casdoor reads nothing else: not sent
        if known != name:
            raise InvalidRequest(f"token field {name!r} is spelled {known!r}")
        if not isinstance(value, str):
            raise InvalidRequest(f"token field {name!r} must be a string")
        fields[name] = value
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
    fields = _fields(request, raw)
    check_grant(fields)
    state = sidecar_state(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    headers["content-type"] = _FORM
    answer = await send_on(state.casdoor.base_url, CASDOOR_TOKEN_PATH, urlencode(fields), headers)
    passed = {"content-type": answer.headers.get("content-type", "application/json")}
    return Response(answer.content, status_code=answer.status_code, headers=passed)

"""The gate in front of Casdoor's sign-up API: a new user joins only the organization of
a tenant login application that has sign-up on.

Casdoor's ``/api/signup`` takes the application and the organization from the body and
never checks that they belong together: once any application takes sign-ups, anyone can
create a user in any organization, ``built-in`` included, whose users are Casdoor-wide
admins (``User.IsGlobalAdmin``). The gateway in front of Casdoor
(``deploy/nginx/casdoor.conf.template``) routes ``/api/signup`` here; the body goes on to
Casdoor unchanged, without our credentials, once the pair is one of ours.
"""

from __future__ import annotations

import json

import httpx
from starlette.requests import Request
from starlette.responses import Response

from iam_sidecar.casdoor.scopes import is_managed
from iam_sidecar.errors import InvalidRequest, SignupRefused
from iam_sidecar.http.util import MAX_BODY_BYTES, sidecar_state

#: where the gateway sends Casdoor's ``POST /api/signup``
SIGNUP_GUARD_PATH = "/casdoor/api/signup"
#: what of the browser's request Casdoor's sign-up reads besides the body
_FORWARDED = ("content-type", "accept-language", "cookie", "x-forwarded-for", "user-agent")


async def guarded_signup(request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        form = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None
    application = form.get("application") if isinstance(form, dict) else None
    organization = form.get("organization") if isinstance(form, dict) else None
    if not isinstance(application, str) or not isinstance(organization, str):
        raise InvalidRequest("application and organization are required")
    state = sidecar_state(request)
    app = await state.casdoor.get_object("application", "admin", application)
    if (
        app is None
        or not is_managed(app)
        or app.get("organization") != organization
        or app.get("enableSignUp") is not True
    ):
        raise SignupRefused(f"organization {organization!r} takes no sign-ups here")
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    async with httpx.AsyncClient(base_url=state.casdoor.base_url, timeout=15) as casdoor:
        answer = await casdoor.post("/api/signup", content=raw, headers=headers)
    passed = {"content-type": answer.headers.get("content-type", "application/json")}
    response = Response(answer.content, status_code=answer.status_code, headers=passed)
    for cookie in answer.headers.get_list("set-cookie"):  # the new user's session
        response.headers.append("set-cookie", cookie)
    return response

"""The gate in front of Casdoor's sign-up API: a new user joins only the organization of
a tenant login application that has sign-up on.

Casdoor's ``/api/signup`` takes the application and the organization from the body and
never checks that they belong together: once any application takes sign-ups, anyone can
create a user in any organization, ``built-in`` included, whose users are Casdoor-wide
admins (``User.IsGlobalAdmin``). The gateway in front of Casdoor
(``deploy/nginx/casdoor.conf.template``) routes ``/api/signup`` here; once the pair is one
of ours, the body goes on to Casdoor as checked (``casdoor_gate``: no member named twice
in any case, encoded again), without our credentials.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from iam_sidecar.casdoor.scopes import is_managed
from iam_sidecar.errors import InvalidRequest, SignupRefused
from iam_sidecar.http.casdoor_gate import json_object_pairs, send_on, single_names
from iam_sidecar.http.util import MAX_BODY_BYTES, sidecar_state

#: where the gateway sends Casdoor's ``POST /api/signup``
SIGNUP_GUARD_PATH = "/casdoor/api/signup"
#: what of the browser's request Casdoor's sign-up reads besides the body
_FORWARDED = ("accept-language", "cookie", "x-forwarded-for", "user-agent")


async def guarded_signup(request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    form = single_names(json_object_pairs(raw))  # the object Casdoor is sent, encoded again
    application, organization = form.get("application"), form.get("organization")
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
    headers["content-type"] = "application/json"
    answer = await send_on(state.casdoor.base_url, "/api/signup", json.dumps(form), headers)
    passed = {"content-type": answer.headers.get("content-type", "application/json")}
    response = Response(answer.content, status_code=answer.status_code, headers=passed)
    for cookie in answer.headers.get_list("set-cookie"):  # the new user's session
        response.headers.append("set-cookie", cookie)
    return response

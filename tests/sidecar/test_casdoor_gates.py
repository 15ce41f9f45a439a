"""What the gates in front of Casdoor read of a request, field by field: each way a field
could reach Casdoor other than as the gate read it is refused before anything is sent
(the served refusals, through the real Casdoor front: ``tests/e2e/test_casdoor_pages.py``
and ``tests/e2e/test_signup.py``)."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from hanzo_stack.process import LOOPBACK, free_port
from iam_sidecar.errors import InvalidRequest, UpstreamUnavailable
from iam_sidecar.http.casdoor_gate import json_object_pairs, send_on, single_names
from iam_sidecar.http.token_gate import _fields

FORM = "application/x-www-form-urlencoded"


def token_request(query: str, content_type: str) -> Request:
    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/casdoor/token", "headers": headers}
    return Request({**scope, "query_string": query.encode()})


@pytest.mark.parametrize(
    ("query", "content_type", "body", "why"),
    [
        ("grant_type=token", "application/json", b'{"grant_type": "authorization_code"}', "more"),
        ("", FORM, b"grant_type=token&grant_type=authorization_code", "more"),
        ("grant_type=token&grant_type=password", FORM, b"", "more"),
        ("", "application/json", b'{"grant_type": "password", "Grant_Type": "token"}', "more"),
        ("", "application/json", b'{"Grant_Type": "token"}', "spelled"),
        ("", "application/json", '{"client_\u017fecret": "x"}'.encode(), "spelled"),
        ("", "text/plain", b'{"grant_type": "token"}', "body is"),
        ("", "multipart/form-data; boundary=b", b"--b\r\n", "body is"),
        ("", "application/json", b'["grant_type", "token"]', "JSON object"),
        ("", "application/json", b'{"grant_type": ["token"]}', "string"),
    ],
)
def test_a_token_field_that_could_reach_casdoor_another_way_is_refused(
    query: str, content_type: str, body: bytes, why: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _fields(token_request(query, content_type), body)
    assert why in refused.value.message


def test_the_token_fields_sent_are_the_ones_read_and_nothing_else() -> None:
    request = token_request("client_id=cli&redirect_uri=x", FORM)
    got = _fields(request, b"grant_type=authorization_code&code=c&code_verifier=v")
    assert got == {
        "client_id": "cli", "grant_type": "authorization_code", "code": "c", "code_verifier": "v"
    }  # fmt: skip


def test_a_signup_member_named_twice_in_any_case_is_refused() -> None:
    raw = json.dumps({"application": "a", "organization": "o"}).encode()
    assert single_names(json_object_pairs(raw)) == {"application": "a", "organization": "o"}
    nested = b'{"a": [{"b": {"c": 1}}], "d": {"e": [1, {"f": 2}]}}'
    assert single_names(json_object_pairs(nested)) == json.loads(nested)
    for twice in (
        b'{"organization": "o", "Organization": "p"}',
        b'{"a": 1, "a": 2}',
        b'{"a": [{"b": 1, "B": 2}]}',
    ):
        with pytest.raises(InvalidRequest):
            single_names(json_object_pairs(twice))


async def test_a_casdoor_that_does_not_answer_is_a_503_not_a_500() -> None:
    with pytest.raises(UpstreamUnavailable) as refused:
        await send_on(f"http://{LOOPBACK}:{free_port()}", "/api/signup", "{}", {})
    assert refused.value.status == 503 and refused.value.code == "casdoor_unavailable"

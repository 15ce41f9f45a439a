"""What the gates in front of Casdoor share: bodies read as Casdoor's Go reads them, and
the request sent on.

Go's JSON decoder matches an object's member to a struct field by name in any case
(Unicode folding: ``Organization``, ``ORGANIZATION``) and keeps the last member that
matches. A gate that reads ``organization`` exactly can be shown one value while Casdoor
takes another (``"Organization": "<another tenant>"`` after the checked pair). So a gate
refuses an object that names a member twice in any case, and sends Casdoor the object it
checked, encoded again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from iam_sidecar.errors import InvalidRequest, UpstreamUnavailable


class _Members(list[tuple[str, Any]]):
    """A JSON object's members (a JSON array stays a plain list)."""


def json_object_pairs(raw: bytes) -> list[tuple[str, Any]]:
    """The members of the JSON object ``raw``, in order, duplicates kept."""
    try:
        pairs = json.loads(raw or b"{}", object_pairs_hook=_Members)
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(pairs, _Members):
        raise InvalidRequest("request body is not a JSON object")
    return pairs


def single_names(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``pairs`` as a dict, and so every object inside it; refuses a name given twice, in
    any case."""
    seen: dict[str, Any] = {}
    folded: set[str] = set()
    for name, value in pairs:
        if name.casefold() in folded:
            raise InvalidRequest(f"field {name!r} is given more than once (in any case)")
        folded.add(name.casefold())
        seen[name] = _plain(value)
    return seen


def _plain(value: Any) -> Any:
    if isinstance(value, _Members):
        return single_names(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def send_on(
    base_url: str, path: str, content: str, headers: dict[str, str]
) -> httpx.Response:
    """POST what the gate checked to Casdoor; a Casdoor that does not answer is a 503."""
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as casdoor:
            return await casdoor.post(path, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"Casdoor did not answer: {type(exc).__name__}") from None

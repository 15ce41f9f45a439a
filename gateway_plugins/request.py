"""What every adapter hands the core: the original method, path and headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hanzo_contract.apikey import looks_like_key

# dot segments and encoded separators: an upstream may decode them into a path the route
# table never saw, so they are refused rather than matched
_AMBIGUOUS = re.compile(r"(^|/)\.{1,2}(/|$)|%2[ef]|%5c|\\|//", re.IGNORECASE)


def _path_of(uri: str) -> str:
    """The path exactly as the upstream will get it: the URI up to ``?`` or ``#``.

    Only an absolute-form URI (``http://host/p``) is parsed; anything else is cut by hand,
    so ``//host/p`` stays ``//host/p`` (and is refused) instead of becoming ``/p``.
    """
    if uri.startswith(("http://", "https://")):
        return urlsplit(uri).path or "/"
    return uri.partition("?")[0].partition("#")[0]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One request to decide on. ``headers`` keys are lower-case."""

    method: str
    uri: str
    headers: Mapping[str, str] = field(default_factory=dict)
    client_ip: str | None = None
    #: the id the gateway made for this request, sent with every try of its decision
    #: (nginx's ``$request_id`` in ``X-Hanzo-Decision-Id``): a retried decision is counted
    #: once. Only an adapter whose gateway sets it over anything a client sent fills it.
    decision_id: str | None = None
    #: the URI's path (see :func:`_path_of`), cut once: a decision reads it several times
    path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path_of(self.uri))

    def path_is_ambiguous(self) -> bool:
        return not self.path.startswith("/") or _AMBIGUOUS.search(self.path) is not None


def _text(value: object) -> str:
    if isinstance(value, list) and value:  # Kong gives a repeated header as a list
        value = value[0]
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


#: the headers :func:`extract_credential` reads, all a decision needs of the client's
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


def lower_asgi_headers(
    raw: Iterable[tuple[bytes, bytes]], only: frozenset[bytes]
) -> dict[str, str]:
    """:func:`lower_headers` for ASGI's raw ``(bytes, bytes)`` pairs, keeping only the
    names in ``only`` (lower-case): the forward-auth service's hot path decodes the few
    headers it reads, not every header a client sent. ASGI servers hand names in lower
    case already (uvicorn does), so a name is lowered only when it is not: the same
    first-value-wins answer for any spelling, without a new bytes per header."""
    headers: dict[str, str] = {}
    for name, value in raw:
        if name not in only and (name.islower() or (name := name.lower()) not in only):
            continue
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


def lower_headers(items: Iterable[tuple[object, object]]) -> dict[str, str]:
    """Headers as :class:`AuthRequest` takes them: names lower-cased, and for a repeated
    name the first value only (as nginx and Starlette do), so a client cannot smuggle a
    second credential past the one the gateway saw. Takes ASGI's raw ``(bytes, bytes)``
    pairs or Kong's ``name -> value | [values]`` items alike."""
    headers: dict[str, str] = {}
    for name, value in items:
        headers.setdefault(_text(name).lower(), _text(value))
    return headers


@dataclass(frozen=True, slots=True)
class Credential:
    kind: str  # "api_key" | "jwt"
    value: str


def extract_credential(headers: Mapping[str, str]) -> Credential | None:
    """``Authorization: Bearer <hk-key | JWT>`` or ``X-API-Key: hk-...`` (the
    :data:`CREDENTIAL_HEADERS`)."""
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            return Credential("api_key" if looks_like_key(token) else "jwt", token)
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return Credential("api_key", api_key)
    return None

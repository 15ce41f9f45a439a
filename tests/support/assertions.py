"""The gateway's part in tests that call an upstream app directly: binding assertions.

Upstreams accept only an assertion signed for them and for the very request (audience,
method, raw path). A test names its caller with a placeholder header value
(:func:`placeholder`); a client with the :func:`bind_assertion` request hook (or a gRPC
channel with the :class:`BindGrpcAssertion` interceptor) swaps it for an assertion signed
for the request being sent, as the gateway would. One registry, in its own
module, serves every test module however pytest imports their conftests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import httpx

from hanzo_contract.headers import ASSERTION

#: ``sign_for(method, raw_path) -> assertion`` of one caller
SignFor = Callable[[str, str], str]

_PENDING: dict[str, SignFor] = {}
_PREFIX = "pending-assertion:"


def placeholder(sign_for: SignFor) -> str:
    """A header value that :func:`bind_assertion` turns into ``sign_for(method, path)``."""
    key = f"{_PREFIX}{uuid.uuid4().hex}"
    _PENDING[key] = sign_for
    return key


async def bind_assertion(request: httpx.Request) -> None:
    """Sign a placeholder's caller for this very request. Anything else a test put in the
    header (forged, expired, bound elsewhere) is sent as it is."""
    sign_for = _PENDING.get(request.headers.get(ASSERTION, ""))
    if sign_for is not None:
        path = request.url.raw_path.decode("ascii").partition("?")[0]
        request.headers[ASSERTION] = sign_for(request.method, path)


class BindGrpcAssertion(grpc.aio.UnaryUnaryClientInterceptor):
    """:func:`bind_assertion` for a gRPC channel: a call is ``POST`` to its method's path,
    which is what the gateway signs for it."""

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata = []
        for key, value in details.metadata or ():
            sign_for = _PENDING.get(value) if key == ASSERTION.lower() else None
            metadata.append((key, sign_for("POST", method) if sign_for else value))
        return await continuation(details._replace(metadata=metadata), request)

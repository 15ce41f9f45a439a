"""The least possible Python forward-auth: an HMAC and a dict lookup, nothing else.

The floor ``scripts/bench_gateway.py`` measures our plugin against: the same server
(uvicorn with the plugin's ``gateway_plugins.cli.SERVER_OPTIONS``: uvloop, httptools, no
Server/Date header, no proxy-header rewriting) with uvicorn's own httptools protocol, a
bare ASGI app, and the same nginx ``auth_request`` wiring, but no routes, limits, cache
policy, request id, access line, audit or signed assertion. (The plugin answers its auth
endpoints from its own protocol, ``gateway_plugins/http_protocol.py``, on uvicorn's; the
benchmark also measures it served as plain ASGI.) One key is known: the one passed in
``HANZO_FLOOR_KEY``.

    python scripts/floor_auth.py --port 8299
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

SECRET = secrets.token_bytes(32)


def digest(key: bytes) -> bytes:
    return hmac.new(SECRET, key, hashlib.sha256).digest()


#: digest of a key -> the identity headers an allow answer carries
KEYS: dict[bytes, list[tuple[bytes, bytes]]] = {}


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[..., Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    found = KEYS.get(digest(auth.removeprefix(b"Bearer ")))
    status, headers = (200, found) if found is not None else (401, [])
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    key = os.environ["HANZO_FLOOR_KEY"].encode()
    KEYS[digest(key)] = [(b"x-hanzo-org", b"bench"), (b"x-hanzo-subject", b"bench/user")]
    import uvicorn

    from gateway_plugins.cli import SERVER_OPTIONS

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **SERVER_OPTIONS)


if __name__ == "__main__":
    main()

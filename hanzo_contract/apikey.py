"""API key format: ``hk-`` + key id + secret, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "hk-"
_KEY_ID_LEN = 12
_SECRET_BYTES = 32
# hk-<12 chars id>_<43 chars base64url of 32 random bytes>
_KEY_RE = re.compile(r"^hk-([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_key_id() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(_KEY_ID_LEN))


def generate_key(key_id: str | None = None) -> tuple[str, str]:
    """Return ``(plaintext_key, key_id)``; 256 bits of secret after the id."""
    key_id = key_id or new_key_id()
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}", key_id


def parse_key_id(key: str) -> str | None:
    """The key id of a well-formed key, or ``None`` for anything else."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def hash_key(server_secret: bytes, key: str) -> str:
    """HMAC-SHA-256 of the whole key under the server secret, hex encoded.

    A stolen key table is useless without the server secret, and lookups go by this
    digest, so no comparison ever touches the plaintext.
    """
    return hmac.new(server_secret, key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key_id: str) -> str:
    """What lists show instead of the key: enough to recognise it, nothing to use."""
    return f"{KEY_PREFIX}{key_id}"

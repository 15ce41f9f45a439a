"""Opaque listing cursors: the (created_at, id) position of the last row served."""

from __future__ import annotations

import base64
import binascii
import json

from memory_service.errors import ApiError


def encode_cursor(created_at: int, memory_id: str) -> str:
    raw = json.dumps([created_at, memory_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, memory_id = json.loads(raw)
        if isinstance(created_at, bool) or not isinstance(created_at, int):
            raise ValueError("position")
        if not isinstance(memory_id, str) or not memory_id:
            raise ValueError("id")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is malformed") from None
    return created_at, memory_id

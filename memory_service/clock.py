"""Time as integer microseconds: exact in every backend's numeric type, and orderable."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from memory_service.backends.base import NEVER


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def expiry_from_us(value: int) -> datetime | None:
    return None if value >= NEVER else from_us(value)

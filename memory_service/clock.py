"""Time as integer microseconds: exact in every backend's numeric type, and orderable.

The service reads the time only through a :data:`Clock` it is handed (:func:`now_us` unless
told otherwise), so a test moves time forward instead of sleeping through a TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from memory_service.backends.base import NEVER

#: microseconds since the epoch, now
Clock = Callable[[], int]


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

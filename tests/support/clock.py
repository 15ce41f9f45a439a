"""Time for tests: a clock they drive, and a wait for room in a real window.

The limiter counts in fixed UTC windows (minute, day, month) and the caches and the JWT
verifier expire entries by the clock: a test that reads the real clock can cross a
minute (or midnight) between two requests and see a 429 turn into a 200. Tests of the
parts hand them a :class:`FakeClock`; tests through real server processes, where the
real clock is the point, first wait until the window has room for them.
"""

from __future__ import annotations

import asyncio
import time

#: 2027-01-15 08:00:30 UTC: half a minute into a minute, eight hours into a day
MID_WINDOW = 1_800_000_030.0


class FakeClock:
    """Seconds since the epoch that move only when the test says so."""

    def __init__(self, now: float = MID_WINDOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_for_window_room(needed: float, window: float = 60.0) -> None:
    """Sleep past the next boundary of a ``window``-second UTC window (minute: 60, day:
    86400) if fewer than ``needed`` seconds are left in the current one."""
    left = window - time.time() % window
    if left < needed:
        await asyncio.sleep(left + 0.05)

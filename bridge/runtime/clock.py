"""The one clock: wall time, monotonic time and sleeping, handed to whatever needs time.

The composition root builds a `SystemClock`; the unit tests hand a clock they move by hand, so
flood windows, mutes, backoff and leases are tested without waiting for them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, in milliseconds since the epoch (what the database stores)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for deadlines and durations."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

"""One statement a second finds the work no wake-up announced, for every worker at once.

    every POLL_SECONDS: SELECT * FROM (<each check's query>), ...   ($1: the time now, in ms)
      -> each check's `found` is given its row's values: it sets its worker's wake-up
         when work is waiting (rows another process added, retries and planned work come
         due, a room that failed) and its gauges (the inbox's lag, the outbox's depth)

Work this process adds wakes its worker at once (`Wakeups`); this watch only finds the
rest. Each worker polled on its own before, five statements a second with the outbox's
count: at the latency benchmark's load, idle polling was about 7 % of the bridge's CPU a
message (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from .clock import Clock
from .workers import Wakeup

POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DueCheck:
    """What one worker asks each round: a query of one row of ``columns`` values (``$1``:
    the time now, in ms), and what to do with them."""

    query: str
    found: Callable[..., None]
    columns: int = 1

    @classmethod
    def waking(cls, query: str, wakeup: Wakeup) -> DueCheck:
        """One value, true when work waits: ``wakeup`` set then."""
        return cls(query, lambda due: wakeup.set() if due else None)


class DueWatch:
    """Runs every check in one statement, once every ``poll_seconds``."""

    def __init__(
        self, db: Database, clock: Clock, checks: Sequence[DueCheck], poll_seconds: float
    ) -> None:
        self._db = db
        self._clock = clock
        self._checks = list(checks)
        self._poll_seconds = poll_seconds
        self._statement = "SELECT * FROM " + ", ".join(  # noqa: S608 (the workers' SQL)
            f"({check.query}) AS due{n}" for n, check in enumerate(self._checks)
        )
        self._uses_now = "$1" in self._statement  # SQLite refuses a parameter it lacks
        self._log = logging.getLogger("bridge.due")

    async def run(self) -> None:
        """Look every ``poll_seconds`` until cancelled; a failure is logged and the next
        round looks again (the workers' own failures are theirs)."""
        while True:
            try:
                await self.look()
            except Exception:
                self._log.exception("Could not look for due work; looking again")
            await self._pause()

    async def _pause(self) -> None:
        # The event loop's time, not the injected clock's: a test clock moves when slept
        # on, and the watch would look in a tight loop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_seconds):
                await asyncio.Event().wait()

    async def look(self) -> None:
        """One round: the statement, then each check given its values."""
        args = (self._clock.now_ms(),) if self._uses_now else ()
        row = await self._db.fetchrow(self._statement, *args)
        values: list[Any] = list(row)  # asyncpg's and SQLite's rows iterate their values
        for check in self._checks:
            taken, values = values[: check.columns], values[check.columns :]
            check.found(*taken)

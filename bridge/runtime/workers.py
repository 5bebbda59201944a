"""The loop every background worker runs, and the wake-ups that start a round early.

add rows (inbox events, outbox rows, planned actions) -> commit -> wakeups.<worker>.set()
worker: drain everything due -> wait for a wake-up, or at most the poll interval (rows
        other bridge processes add, and retries that come due, are found by polling)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


class Wakeup:
    """Tells one worker there is new work for it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, at_most: float) -> None:
        """Until set, or ``at_most`` seconds."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
        # cancellation that stops the worker, and closing the bridge would wait forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._event.wait()

    def clear(self) -> None:
        self._event.clear()


@dataclass(frozen=True, slots=True)
class Wakeups:
    """One wake-up per worker, shared by everything that adds work for it."""

    inbox: Wakeup = field(default_factory=Wakeup)
    outbox: Wakeup = field(default_factory=Wakeup)
    actions: Wakeup = field(default_factory=Wakeup)


async def drain_when_woken(
    drain: Callable[[], Awaitable[None]],
    wakeup: Wakeup,
    log: logging.Logger,
    what: str,
    poll_seconds: float = 1.0,
) -> None:
    """Run ``drain`` until cancelled; a failure is logged and tried again on the next round."""
    while True:
        wakeup.clear()
        try:
            await drain()
        except Exception:
            log.exception("Could not %s; trying again", what)
        await wakeup.wait(poll_seconds)

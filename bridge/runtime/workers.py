"""The loop every background worker runs: drain its work when woken, and at least every poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def drain_when_woken(
    drain: Callable[[], Awaitable[None]],
    wake: asyncio.Event,
    log: logging.Logger,
    what: str,
    poll_seconds: float = 1.0,
) -> None:
    """Run ``drain`` until cancelled; a failure is logged and tried again on the next round."""
    while True:
        wake.clear()
        try:
            await drain()
        except Exception:
            log.exception("Could not %s; trying again", what)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
        # cancellation that stops the worker, and close() would wait forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll_seconds):
                await wake.wait()

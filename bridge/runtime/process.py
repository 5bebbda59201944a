"""What a long-running command shares: stopping on SIGINT or SIGTERM, and a start that failed."""

from __future__ import annotations

import asyncio
import signal


class StartError(Exception):
    """The process could not start (database or port unavailable); the message says why."""


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (in the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop

"""Retrying with exponential backoff: how long to wait, and a loop that keeps trying."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .clock import Clock

T = TypeVar("T")
_MAX_EXPONENT = 62  # 2**62 s is forever already; a larger exponent would overflow a float


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of ``initial`` seconds, doubling with each failure, at most ``maximum``; with
    ``jitter`` each wait is drawn from its upper half, so retries of many peers spread out."""

    initial: float
    maximum: float
    jitter: bool = False

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (1 or more)."""
        exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
        delay = min(self.maximum, self.initial * 2**exponent)
        if self.jitter:
            delay *= (rng or random).uniform(0.5, 1.0)  # jitter, not security
        return delay


async def retry_until_done(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    clock: Clock,
    log: logging.Logger,
    what: str,
) -> T:
    """``attempt`` until it returns; each failure is logged and waited out."""
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as e:
            failures += 1
            delay = backoff.delay(failures)
            log.warning("Could not %s (%s); retrying in %.1fs", what, e, delay)
        await clock.sleep(delay)

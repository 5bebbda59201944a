"""How quickly a party answers, from their exchanges (docs/api.md, Responsiveness).

An exchange starts with the other party's message when nothing of theirs is waiting for this
party already, and ends at this party's first reply after it; people's messages only. The
definitions are those marketplaces publish for hosts and sellers (Airbnb's response rate and
time, Etsy's "first messages answered within 24 hours"):

- **reply rate within 24 h**: exchanges answered within 24 hours / exchanges started in the
  window; an exchange started at most 24 hours ago and not answered yet is *pending*, left
  out (it may still be answered in time);
- **first-response time**: from the start of an exchange to the reply, over the answered ones:
  the median (what a buyer can expect) and the mean.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

DAY_MS = 86_400_000
WINDOW_MS = 30 * DAY_MS


@dataclass(frozen=True, slots=True)
class Exchange:
    started_at: int  # ms
    answered_at: int | None


@dataclass(frozen=True, slots=True)
class Responsiveness:
    exchanges: int  # started in the window
    answered: int
    answered_within_24h: int
    pending: int  # unanswered, younger than 24 h: not counted in the rate
    reply_rate_24h: float | None  # None: nothing to count yet
    median_response_seconds: float | None
    mean_response_seconds: float | None


def responsiveness(exchanges: list[Exchange], now: int) -> Responsiveness:
    delays = [e.answered_at - e.started_at for e in exchanges if e.answered_at is not None]
    in_time = sum(1 for delay in delays if delay <= DAY_MS)
    pending = sum(1 for e in exchanges if e.answered_at is None and now - e.started_at <= DAY_MS)
    counted = len(exchanges) - pending
    return Responsiveness(
        exchanges=len(exchanges),
        answered=len(delays),
        answered_within_24h=in_time,
        pending=pending,
        reply_rate_24h=round(in_time / counted, 4) if counted else None,
        median_response_seconds=statistics.median(delays) / 1000 if delays else None,
        mean_response_seconds=round(statistics.fmean(delays) / 1000, 3) if delays else None,
    )

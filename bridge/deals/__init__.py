"""Deals that do not stall: unread reminders, responsiveness, nudges and escalation.

tracker.py         what a stored message or read starts or ends (in the inbox worker's
                   transaction): exchanges, and follow-ups with their due time
worker.py          fires the follow-ups that come due, once across processes
responsiveness.py  first-response times and reply rates, from the exchanges
records.py         the exchanges and follow_ups tables
"""

from __future__ import annotations

from bridge.config import Config
from policy.follow_ups import Delays


def delays_from(config: Config) -> Delays:
    def ms(seconds: float | None) -> int | None:
        return None if seconds is None else round(seconds * 1000)

    reminders, deals = config.reminders, config.deals
    return Delays(
        unread_ms=ms(reminders.unread_after),
        repeat_ms=ms(reminders.repeat_after),
        nudge_ms=ms(deals.nudge_after),
        escalate_ms=ms(deals.escalate_after),
        auto_dispute=deals.auto_dispute,
    )

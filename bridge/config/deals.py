"""The reminders and deals sections: unread reminders, nudges and escalation (docs/deals.md).

A duration is a number of seconds or a number with a unit (``90s``, ``10m``, ``12h``, ``2d``);
``off`` (or null) turns a step off.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from .types import Section

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
MIN_SECONDS, MAX_SECONDS = 1, 30 * 86400
OFF = ("off", "none", "null", "false", "")


def _seconds(value: Any) -> float | None:
    if value is None or value is False:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 10m, 12h, 2d, or off")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() in OFF:
        return None
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration such as 90s, 10m, 12h, 2d, or off")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ValueError("must be between 1 second and 30 days")
    return seconds


# Seconds, or None for off.
Duration = Annotated[float | None, BeforeValidator(_seconds)]


class RemindersConfig(Section):
    """Unread reminders: a `message.unread_reminder` webhook when a party leaves a message
    unread in a managed room."""

    unread_after: Duration = Field(
        default=600,
        description="How long a party's message may wait unread before one reminder about it"
        " (90s, 10m, 12h, 2d; off: no reminders).",
    )
    repeat_after: Duration = Field(
        default=None,
        description="Remind again this long after a reminder while the burst stays unread"
        " (off: one reminder per burst).",
    )


class DealsConfig(Section):
    """Nudges and escalation when the seller leaves a buyer's message unanswered in a paid,
    open transaction room."""

    nudge_after: Duration = Field(
        default=12 * 3600,
        description="After this long without the seller's answer, the bot posts one polite"
        " notice in the room and a `deal.nudge` webhook goes out (off: no nudges).",
    )
    escalate_after: Duration = Field(
        default=None,
        description="After this long without an answer, a `deal.escalation_due` webhook"
        " (off: no escalation); counted from the buyer's message, so later than nudge_after.",
    )
    auto_dispute: bool = Field(
        default=False,
        description="At escalation, open a dispute (reason 'no response', opened by the"
        " marketplace), admins invited as for any dispute. Needs escalate_after.",
    )

    @model_validator(mode="after")
    def _escalation_after_the_nudge(self) -> DealsConfig:
        late, nudge = self.escalate_after, self.nudge_after
        if late is not None and nudge is not None and late <= nudge:
            raise ValueError(
                "escalate_after must be later than nudge_after"
                f" ({late:g} s is not after {nudge:g} s)"
            )
        if self.auto_dispute and late is None:
            raise ValueError("auto_dispute needs escalate_after (it is off)")
        return self

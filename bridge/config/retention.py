"""The retention section: how long a deal's rooms outlive it, and legal holds (docs/retention.md).

A retention period is a number of days (0.5 is twelve hours) or a duration with a unit (90s,
10m, 12h, 30d), at most 100 years; ``off`` (or null) keeps the rooms for good.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from policy.retention import Periods

from .types import Section

DAY_SECONDS = 86400
MAX_DAYS = 36500  # a hundred years: anything longer is a typo, not a policy
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_OFF = ("off", "none", "null", "false", "")
_PROBLEM = "must be a number of days (0 to 36500) or a duration such as 90s, 12h, 30d"


def _days(value: Any, *, off: bool = True) -> float | None:
    """Days as a float, or None (off)."""
    # YAML reads a bare off as false.
    if off and (
        value is None
        or value is False
        or (isinstance(value, str) and value.strip().lower() in _OFF)
    ):
        return None
    problem = _PROBLEM + (", or off" if off else "")
    if isinstance(value, bool) or value is None:
        raise ValueError(problem)
    if isinstance(value, int | float):
        days = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        days = float(match[1]) * _UNITS[match[2]] / DAY_SECONDS
    else:
        try:
            days = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} {problem}") from None
    if not 0 <= days <= MAX_DAYS:  # NaN fails this too
        raise ValueError(f"{value!r} {problem}")
    return days


# Days, or None: kept for good.
RetentionDays = Annotated[float | None, BeforeValidator(_days)]
# Days, never off.
Days = Annotated[float, BeforeValidator(lambda value: _days(value, off=False))]


class ClosedTransactionDays(Section):
    """How long a closed transaction's room is kept, by how the deal ended."""

    completed: RetentionDays = Field(default=None, description="Closed as completed.")
    cancelled: RetentionDays = Field(default=None, description="Closed as cancelled.")
    refunded: RetentionDays = Field(default=None, description="Closed as refunded.")


class RetentionConfig(Section):
    """When a deal's rooms are exported, announced (room.purged) and removed for good; legal
    holds keep them. Every period counts from the transaction's close or the dispute's
    resolution; off keeps rooms for good (the default)."""

    closed_transaction_days: ClosedTransactionDays = Field(
        default=ClosedTransactionDays(),
        description="A closed transaction's room, per outcome: days, a duration, or off.",
    )
    resolved_dispute_days: RetentionDays = Field(
        default=None, description="A resolved dispute's room: days, a duration, or off."
    )
    hold_after_resolution_days: Days = Field(
        default=0,
        description="A dispute holds its transaction's rooms (and its parties' erasure) while"
        " open and this long after its resolution (0: until resolved).",
    )
    webhooks_days: RetentionDays = Field(
        default=30,
        description="Delivered webhooks and dead letters are deleted this long after they"
        " were delivered or given up (off: kept).",
    )
    transcripts_directory: Path = Field(
        default=Path("transcripts"),
        description="Where each room's final transcript is stored before the room is"
        " removed (relative paths from the working directory).",
    )
    check_interval_seconds: float = Field(
        default=5,
        gt=0,
        le=86400,
        description="How often the bridge looks for rooms whose time has come and rows to prune.",
    )

    def periods(self) -> Periods:
        closed = self.closed_transaction_days
        return Periods(
            transaction={
                "completed": closed.completed,
                "cancelled": closed.cancelled,
                "refunded": closed.refunded,
            },
            dispute=self.resolved_dispute_days,
            hold_after_resolution=self.hold_after_resolution_days,
        )

"""Retention: when a deal's room goes, what holds it, and the steps of its removal.

    kind + outcome + when it ended + periods  -> due time (None: kept for good)
    the transaction's manual hold + its disputes + now -> [Hold]  ([] when nothing holds it)

A room's removal goes through these steps, each stored before the next starts, so a crash
at any point resumes where it stopped and never redoes a finished step:

    scheduled  -> exported   the final transcript stored (nothing is removed before this)
               -> announced  room.purged queued (at least once, in the room's order); from
                             here the room is the homeserver's to remove, not ours to repair
               -> removed    the homeserver removed it (members out, history purged, blocked)
               -> done       the bridge's own rows of the room pruned
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .ids import DisputeId, RoomId, TransactionId
from .notifications import Notification, notification_id

DAY_MS = 86_400_000
RESOLVED = "resolved"  # a dispute room's "outcome"


class PurgeStep(StrEnum):
    SCHEDULED = "scheduled"
    EXPORTED = "exported"
    ANNOUNCED = "announced"
    REMOVED = "removed"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Periods:
    """Days each kind of room is kept after its object ended; None: for good."""

    transaction: Mapping[str, float | None]  # by outcome: completed, cancelled, refunded
    dispute: float | None
    hold_after_resolution: float  # days a resolved dispute still holds its transaction

    def kept_for_ms(self, kind: str, outcome: str) -> int | None:
        days = self.dispute if kind == "dispute" else self.transaction.get(outcome)
        return None if days is None else round(days * DAY_MS)

    def due_at(self, kind: str, outcome: str, ended_at: int) -> int | None:
        kept = self.kept_for_ms(kind, outcome)
        return None if kept is None else ended_at + kept

    @property
    def hold_after_ms(self) -> int:
        return round(self.hold_after_resolution * DAY_MS)

    def fingerprint(self) -> str:
        """Changes whenever a due date could: stored due dates are then computed again."""
        periods = sorted(self.transaction.items())
        return repr((periods, self.dispute))


KEEP_FOREVER = Periods(transaction={}, dispute=None, hold_after_resolution=0)


@dataclass(frozen=True, slots=True)
class Hold:
    """What keeps a transaction's rooms (and its parties' data): a manual legal hold, or one
    of its disputes, open or resolved less than the configured time ago."""

    transaction_id: TransactionId
    kind: str  # manual or dispute
    since: int  # ms
    until: int | None  # ms; None: until released (manual) or resolved (dispute)
    reason: str | None
    placed_by: str | None = None
    dispute_id: DisputeId | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "kind": self.kind,
            "dispute_id": self.dispute_id,
            "since": self.since,
            "until": self.until,
            "reason": self.reason,
            "placed_by": self.placed_by,
        }

    def describe(self) -> str:
        if self.kind == "manual":
            return f"the legal hold on transaction {self.transaction_id} ({self.reason})"
        state = "open" if self.until is None else "recently resolved"
        return f"the {state} dispute {self.dispute_id} of transaction {self.transaction_id}"


@dataclass(frozen=True, slots=True)
class DisputeTimes:
    dispute_id: DisputeId
    created_at: int
    resolved_at: int | None  # None: open


def dispute_hold(
    transaction_id: TransactionId, dispute: DisputeTimes, hold_after_ms: int, now: int
) -> Hold | None:
    """The hold a dispute puts on its transaction now, if any."""
    until = None if dispute.resolved_at is None else dispute.resolved_at + hold_after_ms
    if until is not None and until <= now:
        return None
    return Hold(
        transaction_id,
        "dispute",
        dispute.created_at,
        until,
        "an open dispute" if until is None else "a dispute resolved recently",
        dispute_id=dispute.dispute_id,
    )


def purged_notification(
    room: RoomId,
    kind: str,
    transaction_id: TransactionId,
    dispute_id: DisputeId | None,
    transcript: Mapping[str, Any],
    occurred_at: int,
) -> Notification:
    """room.purged: the room is removed for good; what stays proves what was said."""
    data = {
        "room_id": room,
        "room_kind": kind,
        "transaction_id": transaction_id,
        **({"dispute_id": dispute_id} if dispute_id is not None else {}),
        "final_hash": transcript["final_hash"],
        "entry_count": transcript["entry_count"],
        "transcript": transcript["location"],
    }
    return Notification("room.purged", notification_id("purge", room), occurred_at, data)

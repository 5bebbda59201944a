"""What a dry run lists: the rooms whose time has come by a given time, what holds any of
them, and how many old webhooks would be deleted. Nothing is changed."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from bridge.market.records.holds import ONE, holds_where
from policy.retention import DAY_MS, Hold
from policy.transcript import iso_time

from .records import Purge, PurgeRecords
from .worker import RetentionSettings


@dataclass(frozen=True, slots=True)
class PlannedPurge:
    purge: Purge
    holds: list[Hold]  # [] : it would go

    def line(self) -> str:
        purge = self.purge
        what = f"{purge.kind} {purge.object_id} ({purge.outcome})"
        due = iso_time(purge.due_at) if purge.due_at is not None else "never"
        if self.holds:
            verdict = "kept: held by " + "; ".join(hold.describe() for hold in self.holds)
        elif purge.status.value != "scheduled":
            verdict = f"would be finished (stopped after: {purge.status.value})"
        else:
            verdict = "would be removed"
        return f"{due}  {purge.room_id}  {what}: {verdict}"


async def plan(db: Database, settings: RetentionSettings, at: int) -> list[PlannedPurge]:
    """Every room due by ``at`` with the holds that would keep it then."""
    hold_after = settings.periods.hold_after_ms
    planned = []
    for purge in await PurgeRecords(db).pending(at):
        holds: list[Hold] = []
        if purge.status.value in ("scheduled", "exported"):  # later steps go regardless
            holds = await holds_where(db, ONE, hold_after, at, purge.transaction_id)
        planned.append(PlannedPurge(purge, holds))
    return planned


async def webhooks_to_prune(db: Database, settings: RetentionSettings, at: int) -> int:
    if settings.webhooks_days is None:
        return 0
    before = at - round(settings.webhooks_days * DAY_MS)
    return await db.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE (status = 'delivered' AND delivered_at < $1)"
        " OR (status = 'dead' AND retry_until < $1)",
        before,
    )

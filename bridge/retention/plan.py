"""What a dry run lists: the rooms whose time has come by a given time under the configured
periods (a change of periods shows before it is applied), what holds any of them, and how
many old webhooks would be deleted. Nothing is changed."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mautrix.util.async_db import Database

from bridge.market.records.holds import ONE, holds_where
from policy.retention import DAY_MS, Hold, PurgeStep
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
    """Every room due by ``at`` with the holds that would keep it then, soonest first."""
    periods, hold_after = settings.periods, settings.periods.hold_after_ms
    planned = []
    for purge in await PurgeRecords(db).unfinished():
        if purge.status is PurgeStep.SCHEDULED:  # its due date as these periods make it
            due_at = periods.due_at(purge.kind, purge.outcome, purge.ended_at)
            purge = replace(purge, due_at=due_at)
        if purge.due_at is None or purge.due_at > at:
            continue
        holds: list[Hold] = []
        if purge.status.value in ("scheduled", "exported"):  # later steps go regardless
            holds = await holds_where(db, ONE, hold_after, at, purge.transaction_id)
        planned.append(PlannedPurge(purge, holds))
    return sorted(planned, key=lambda item: (item.purge.due_at, item.purge.room_id))


async def webhooks_to_prune(db: Database, settings: RetentionSettings, at: int) -> int:
    if settings.webhooks_days is None:
        return 0
    before = at - round(settings.webhooks_days * DAY_MS)
    return await db.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE (status = 'delivered' AND delivered_at < $1)"
        " OR (status = 'dead' AND retry_until < $1)",
        before,
    )

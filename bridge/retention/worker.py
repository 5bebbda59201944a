"""The retention worker: each room whose time has come, exported, announced, removed, pruned.

    every check interval -> delivered webhooks and dead letters past webhooks_days deleted
                         -> rooms due that nothing holds -> claimed (a lease: one process
                            each) -> from the step stored, each step stored before the next:
       scheduled  the final transcript built from our records, stored (TranscriptStore)
       exported   in ONE database transaction, on the transaction's row lock: still unheld?
                  then room.purged queued, purged_at and the hash on the object, audited
                  (held meanwhile: back to scheduled, exported again once released)
       announced  the homeserver removes the room (members out, history purged, blocked)
       removed    the bridge's own rows of the room deleted -> done

A crash at any point leaves the stored step: the next claim (after the lease) resumes there.
A step that fails (the homeserver away) is tried again after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from mautrix.util.async_db import Connection, Database

from bridge.config import Config
from bridge.delivery.outbox import add_notifications
from bridge.market.records.audit import AuditEntry, write_audit
from bridge.market.records.holds import ONE, holds_where
from bridge.market.records.settings import Settings
from bridge.policybot.transcripts import Transcripts
from bridge.runtime.backoff import Backoff
from bridge.runtime.clock import Clock
from bridge.runtime.workers import Wakeup, drain_when_woken
from bridge.storage.database import rows_affected
from bridge.storage.transcripts import TranscriptStore, file_name
from policy.ids import RoomId, TransactionId
from policy.retention import DAY_MS, Periods, PurgeStep, purged_notification

from .records import Purge, PurgeRecords, prune_room, prune_webhooks

LEASE_MS = 5 * 60_000  # longer than any one step (a big room's purge on the homeserver)
BATCH = 20
BACKOFF = Backoff(initial=5, maximum=600)
PERIODS_SETTING = "retention_periods"


class Held(Exception):
    """A hold came before the announcement: the purge waits for it to end."""


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    periods: Periods
    webhooks_days: float | None
    check_interval_seconds: float
    retry_for_ms: int  # of the room.purged webhook

    @classmethod
    def of(cls, config: Config) -> RetentionSettings:
        retention = config.retention
        return cls(
            retention.periods(),
            retention.webhooks_days,
            retention.check_interval_seconds,
            config.webhooks.retry_for_seconds * 1000,
        )


class RetentionWorker:
    def __init__(
        self,
        db: Database,
        settings: RetentionSettings,
        transcripts: Transcripts,
        store: TranscriptStore,
        remove_room: Callable[[RoomId], Awaitable[None]],
        actor: str,
        clock: Clock,
        outbox: Wakeup,
        connected: asyncio.Event,
    ) -> None:
        self._db = db
        self._settings = settings
        self._purges = PurgeRecords(db)
        self._transcripts = transcripts
        self._store = store
        self._remove_room = remove_room
        self._actor = actor
        self._clock = clock
        self._outbox = outbox
        self._connected = connected
        self._log = logging.getLogger("bridge.retention")
        self._periods_checked = False

    async def run(self) -> None:
        await self._connected.wait()
        await drain_when_woken(
            self.drain,
            Wakeup(),
            self._log,
            "apply the retention settings",
            self._settings.check_interval_seconds,
        )

    async def reschedule_if_changed(self) -> None:
        """Due dates follow the settings: computed again once they changed."""
        settings, fingerprint = Settings(self._db), self._settings.periods.fingerprint()
        if await settings.get(PERIODS_SETTING) == fingerprint:
            return
        changed = await self._purges.reschedule(self._settings.periods)
        await settings.set(PERIODS_SETTING, fingerprint)
        self._log.info("Retention periods changed: %d rooms' due dates computed again", changed)

    async def drain(self) -> int:
        """Prune old webhooks, then take every room that is due through its steps; how many
        rooms this process removed."""
        if not self._periods_checked:  # the periods cannot change while the process runs
            await self.reschedule_if_changed()
            self._periods_checked = True
        if (days := self._settings.webhooks_days) is not None:
            pruned = await prune_webhooks(self._db, self._clock.now_ms() - round(days * DAY_MS))
            if pruned:
                self._log.info("Deleted %d webhooks delivered or given up long ago", pruned)
        removed = 0
        while True:
            now = self._clock.now_ms()
            due = await self._purges.due(now, self._settings.periods.hold_after_ms, BATCH)
            for purge in due:
                removed += await self._purge(purge)
            if len(due) < BATCH:
                return removed

    async def _purge(self, purge: Purge) -> bool:
        """Whether this call took the room to its end."""
        now = self._clock.now_ms()
        claimed = await self._purges.claim(purge, now, now + LEASE_MS)
        if claimed is None:
            return False  # another process has it
        purge = claimed
        try:
            while purge.status is not PurgeStep.DONE:
                moved = await self._step(purge)
                if moved is None:
                    return False  # the lease was lost, or a hold came first
                purge = moved
        except Exception as e:
            retry_at = self._clock.now_ms() + int(BACKOFF.delay(purge.attempts) * 1000)
            self._log.warning("Could not purge room %s (%s): %s", purge.room_id, purge.status, e)
            await self._purges.back_off(purge, f"{type(e).__name__}: {e}", retry_at)
            return False
        self._log.info("Purged the %s room %s (%s)", purge.kind, purge.room_id, purge.object_id)
        return True

    async def _step(self, purge: Purge) -> Purge | None:
        """Do the step after ``purge.status``; the row as it is then (None: stopped)."""
        now = self._clock.now_ms()
        if purge.status is PurgeStep.SCHEDULED:
            document = await self._export(purge)
            location = await self._store.put(file_name(purge.kind, purge.object_id), document)
            columns = {
                "transcript_location": location,
                "transcript_hash": document["final_hash"],
                "entry_count": document["entry_count"],
            }
            return await self._moved(self._db, purge, PurgeStep.EXPORTED, now, **columns)
        if purge.status is PurgeStep.EXPORTED:
            try:
                async with self._db.acquire() as conn, conn.transaction():
                    await self._announce(conn, purge, now)
                    moved = await self._moved(conn, purge, PurgeStep.ANNOUNCED, now)
            except Held:
                await self._moved(self._db, purge, PurgeStep.SCHEDULED, now)
                await self._purges.back_off(purge, "held", 0)
                return None
            self._outbox.set()
            return moved
        if purge.status is PurgeStep.ANNOUNCED:
            await self._remove_room(purge.room_id)
            return await self._moved(self._db, purge, PurgeStep.REMOVED, now)
        async with self._db.acquire() as conn, conn.transaction():
            await prune_room(conn, purge.room_id)
            return await self._moved(conn, purge, PurgeStep.DONE, now, done_at=now)

    async def _moved(
        self, conn: Connection | Database, purge: Purge, to: PurgeStep, now: int, **columns
    ) -> Purge | None:
        if not await self._purges.step(conn, purge, to, now, **columns):
            return None
        fields = {name: value for name, value in columns.items() if name != "done_at"}
        return replace(purge, status=to, **fields)

    async def _export(self, purge: Purge) -> dict:
        if purge.dispute_id is not None:
            return await self._transcripts.of_dispute(purge.dispute_id, self._actor)
        return await self._transcripts.of_transaction(purge.transaction_id, self._actor)

    async def _announce(self, conn: Connection, purge: Purge, now: int) -> None:
        """Under the transaction's row lock: refuse if held; else mark the object and queue
        room.purged (in the room's own stream: after every webhook of its messages)."""
        hashed = purge.transcript_hash
        # The lock first: a hold placed meanwhile takes the same row (market.records.holds).
        locked = await conn.execute(
            "UPDATE transactions SET held_at = held_at WHERE transaction_id = $1"
            " AND held_at IS NULL",
            purge.transaction_id,
        )
        hold_after = self._settings.periods.hold_after_ms
        if rows_affected(locked) != 1 or await holds_where(
            conn, ONE, hold_after, now, purge.transaction_id
        ):
            raise Held
        table, key = "transactions", "transaction_id"
        if purge.dispute_id is not None:
            table, key = "disputes", "dispute_id"
        await conn.execute(
            f"UPDATE {table} SET purged_at = $2, transcript_hash = $3 WHERE {key} = $1",  # noqa: S608
            purge.object_id,
            now,
            hashed,
        )
        document = {
            "final_hash": hashed,
            "entry_count": purge.entry_count,
            "location": purge.transcript_location,
        }
        notification = purged_notification(
            purge.room_id,
            purge.kind,
            TransactionId(purge.transaction_id),
            purge.dispute_id,
            document,
            now,
        )
        await add_notifications(
            conn, purge.room_id, [notification], self._settings.retry_for_ms, now
        )
        await write_audit(
            conn,
            AuditEntry(
                actor=self._actor,
                action="room.purged",
                room_id=purge.room_id,
                reason=f"retention: {purge.outcome}",
                detail=f"transcript {purge.transcript_location}, final hash {hashed}",
                transaction_id=purge.transaction_id,
                dispute_id=purge.dispute_id,
            ),
            now,
        )

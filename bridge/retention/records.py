"""The purges table as the retention worker reads and steps it, and the pruning of rows.

Every step is fenced by the lease it was claimed with (``lease_until`` as claimed): a
process whose lease ran out and was taken over writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Connection, Database, Scheme

from bridge.storage.database import rows_affected
from bridge.storage.transcripts import TranscriptStore
from policy.ids import DisputeId, RoomId, TransactionId
from policy.retention import Periods, PurgeStep

# A room that nothing holds: no manual hold on its transaction, no dispute of it open or
# resolved after $2 (now less the hold after resolution). Only a room still scheduled waits
# here; an exported one is checked again, under a lock, as it is announced (and goes back to
# scheduled if held); once announced, the room goes.
_UNHELD = """
    (p.status <> 'scheduled' OR (
        t.held_at IS NULL AND NOT EXISTS (
            SELECT 1 FROM disputes d WHERE d.transaction_id = p.transaction_id
            AND (d.resolved_at IS NULL OR d.resolved_at > $2))))
"""
_COLUMNS = """
    p.room_id, p.kind, p.object_id, p.transaction_id, p.outcome, p.ended_at, p.due_at,
    p.status, p.transcript_location, p.transcript_hash, p.entry_count, p.attempts,
    p.lease_until, p.last_error
"""
# The bridge's own rows about a room, deleted once the homeserver removed it (the audit
# trail stays: it proves what the bot and admins did).
ROOM_TABLES = (
    "inbox_events",
    "read_positions",
    "messages",
    "masked_originals",
    "planned_actions",
    "mutes",
    "blocked_invites",
    "bot_actions",
    "follow_ups",
    "exchanges",
)
PRUNE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Purge:
    room_id: RoomId
    kind: str  # transaction or dispute
    object_id: str
    transaction_id: TransactionId
    outcome: str
    ended_at: int
    due_at: int | None
    status: PurgeStep
    transcript_location: str | None
    transcript_hash: str | None
    entry_count: int | None
    attempts: int
    lease_until: int
    last_error: str | None

    @property
    def dispute_id(self) -> DisputeId | None:
        return DisputeId(self.object_id) if self.kind == "dispute" else None


def _purge(row) -> Purge:
    return Purge(**{**dict(row), "status": PurgeStep(row["status"])})


class PurgeRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, now: int, hold_after_ms: int, limit: int) -> list[Purge]:
        """Rooms whose time has come, that nothing holds and no process has claimed."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM purges p"  # noqa: S608 (constants)
            " JOIN transactions t ON t.transaction_id = p.transaction_id"
            f" WHERE p.status <> 'done' AND p.due_at <= $1 AND p.lease_until < $1 AND {_UNHELD}"
            " ORDER BY p.due_at, p.room_id LIMIT $3",
            now,
            now - hold_after_ms,
            limit,
        )
        return [_purge(row) for row in rows]

    async def unfinished(self) -> list[Purge]:
        """Every room whose clock runs and that is not removed yet, due or not, held or not:
        what a dry run looks through."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM purges p WHERE p.status <> 'done'"  # noqa: S608
            " ORDER BY p.ended_at, p.room_id"
        )
        return [_purge(row) for row in rows]

    async def get(self, room_id: RoomId) -> Purge | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM purges p WHERE p.room_id = $1",  # noqa: S608
            room_id,
        )
        return _purge(row) if row else None

    async def claim(self, purge: Purge, now: int, until: int) -> Purge | None:
        """The row leased to this process until ``until`` (None: another has it)."""
        status = await self._db.execute(
            "UPDATE purges SET lease_until = $2, attempts = attempts + 1"
            " WHERE room_id = $1 AND status = $3 AND lease_until < $4",
            purge.room_id,
            until,
            purge.status.value,
            now,
        )
        if rows_affected(status) != 1:
            return None
        return await self.get(purge.room_id)

    async def step(
        self, conn: Connection | Database, purge: Purge, to: PurgeStep, now: int, **columns
    ) -> bool:
        """Move a claimed row to its next step (with ``columns`` set); False when the lease
        was lost meanwhile."""
        names = list(columns)
        sets = "".join(f", {name} = ${n}" for n, name in enumerate(names, start=6))
        status = await conn.execute(
            f"UPDATE purges SET status = $2, updated_at = $3, last_error = NULL{sets}"  # noqa: S608
            " WHERE room_id = $1 AND status = $4 AND lease_until = $5",
            purge.room_id,
            to.value,
            now,
            purge.status.value,
            purge.lease_until,
            *columns.values(),
        )
        return rows_affected(status) == 1

    async def back_off(self, purge: Purge, error: str, retry_at: int) -> None:
        """A failed step: tried again at ``retry_at`` (the lease doubles as the wait)."""
        await self._db.execute(
            "UPDATE purges SET lease_until = $3, last_error = $4"
            " WHERE room_id = $1 AND lease_until = $2",
            purge.room_id,
            purge.lease_until,
            retry_at,
            error[:500],
        )

    async def reschedule(self, periods: Periods) -> int:
        """Due dates of the rooms still waiting, computed again from ``periods``."""
        changed = 0
        outcomes = await self._db.fetch(
            "SELECT DISTINCT kind, outcome FROM purges WHERE status = 'scheduled'"
        )
        for row in outcomes:
            kept = periods.kept_for_ms(row["kind"], row["outcome"])
            status = await self._db.execute(
                "UPDATE purges SET due_at = CASE WHEN $3 < 0 THEN NULL ELSE ended_at + $3 END"
                " WHERE status = 'scheduled' AND kind = $1 AND outcome = $2",
                row["kind"],
                row["outcome"],
                -1 if kept is None else kept,
            )
            changed += rows_affected(status)
        return changed


async def prune_room(conn: Connection, room_id: RoomId) -> int:
    """Delete the bridge's own rows of a removed room; how many. Its webhooks go by age,
    with every other (`prune_webhooks`): room.purged may not be delivered yet."""
    deleted = 0
    for table in ROOM_TABLES:
        status = await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id)  # noqa: S608
        deleted += rows_affected(status)
    return deleted


async def prune_webhooks(db: Database, before: int) -> int:
    """Delete delivered webhooks delivered before ``before`` and dead letters whose retries
    ended before it, a batch at a time (no long lock on the outbox); how many."""
    deleted = 0
    # Each batch walks its index (outbox_delivered, outbox_dead) in order: without the ORDER BY
    # PostgreSQL scans the table from its first page every batch, past what earlier batches
    # deleted (16.4 s against 5.8 s for 1,000,000 rows; docs/performance.md).
    # On PostgreSQL the batch's seqs are gathered first (ARRAY(...)): 'seq IN (SELECT ...)' was
    # planned as a join over a scan of the whole outbox, every batch (73 against 7 ms a batch
    # of 5,000 at 300,000 rows; tests/db/test_plans.py).
    # The condition is checked again as each row is deleted: a dead letter replayed since
    # the batch was picked is kept.
    among = "seq IN ({})" if db.scheme == Scheme.SQLITE else "seq = ANY (ARRAY ({}))"
    for condition, order in (
        ("status = 'delivered' AND delivered_at < $1", "delivered_at"),
        ("status = 'dead' AND retry_until < $1", "seq"),
    ):
        batch = among.format(
            f"SELECT seq FROM outbox WHERE {condition} ORDER BY {order} LIMIT $2"  # noqa: S608
        )
        while True:
            status = await db.execute(
                f"DELETE FROM outbox WHERE {batch} AND {condition}",  # noqa: S608
                before,
                PRUNE_BATCH,
            )
            deleted += (count := rows_affected(status))
            if count < PRUNE_BATCH:
                break
    return deleted


class StoredTranscripts:
    """The transcripts stored before rooms were removed, by room."""

    def __init__(self, purges: PurgeRecords, store: TranscriptStore) -> None:
        self._purges = purges
        self.store = store

    async def of_room(self, room_id: RoomId) -> dict | None:
        purge = await self._purges.get(room_id)
        if purge is None or purge.transcript_location is None:
            return None
        return await self.store.get(purge.transcript_location)

"""The disputes table: at most one open dispute per transaction (a partial unique index)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from bridge.delivery.outbox import add_notifications
from bridge.runtime.clock import Clock
from bridge.storage.database import rows_affected
from policy.ids import DisputeId, RoomId, TransactionId
from policy.notifications import Notification
from policy.retention import RESOLVED, Periods
from policy.states import DisputeState, TransactionState

from ..errors import InvalidState
from ..models import DisputeRecord, NewDispute, Resolution, TransactionRecord
from .audit import AuditEntry, write_audit
from .purges import schedule_purge
from .transactions import refuse_different

DISPUTE_FIELDS = (
    "dispute_id",
    "transaction_id",
    "reason",
    "opened_by",
    "state",
    "decision",
    "note",
    "resolved_by",
    "source",
    "room_id",
    "room_version",
    "created_at",
    "resolved_at",
    "purged_at",
    "transcript_hash",
)
_SELECT = f"SELECT {', '.join(DISPUTE_FIELDS)} FROM disputes"  # noqa: S608 (constants)


def dispute_of(row, prefix: str = "") -> DisputeRecord:
    """The dispute in a row, its columns named ``prefix`` + field (a join's, say ``x_``)."""
    fields = {name: row[prefix + name] for name in DISPUTE_FIELDS}
    return DisputeRecord(**{**fields, "state": DisputeState(fields["state"])})


async def _clear_override(conn: Connection, transaction_id: TransactionId, now: int) -> None:
    """An admin's lock or unlock lasts until the marketplace's next change."""
    await conn.execute(
        "UPDATE transactions SET access_override = NULL, changed_at = $2"
        " WHERE transaction_id = $1",
        transaction_id,
        now,
    )


class DisputeRecords:
    def __init__(self, db: Database, clock: Clock, periods: Periods) -> None:
        self._db = db
        self._clock = clock
        self._periods = periods

    async def get(self, dispute_id: DisputeId) -> DisputeRecord | None:
        row = await self._db.fetchrow(_SELECT + " WHERE dispute_id = $1", dispute_id)
        return dispute_of(row) if row else None

    async def open(self) -> list[DisputeRecord]:
        rows = await self._db.fetch(_SELECT + " WHERE state = 'open' ORDER BY created_at")
        return [dispute_of(row) for row in rows]

    async def insert(
        self,
        new: NewDispute,
        transaction: TransactionRecord,
        notification: Notification,
        audit: AuditEntry,
        retry_for_ms: int,
    ) -> tuple[DisputeRecord, bool]:
        """Open a dispute (and queue dispute.opened), or find the identical one; True when new.

        `Conflict` naming the fields when the id exists with other content.
        """
        async with self._db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SELECT + " WHERE dispute_id = $1", new.dispute_id)
            created = row is None
            if created:
                # Take the transaction's row, and only while it is still paid: a close or a
                # payment in another bridge process either went first (and this refuses) or
                # waits for this one to commit (and then sees the dispute; apply_transition).
                status = await conn.execute(
                    "UPDATE transactions SET access_override = NULL, changed_at = $3"
                    " WHERE transaction_id = $1 AND state = $2",
                    transaction.transaction_id,
                    TransactionState.PAID.value,
                    self._clock.now_ms(),
                )
                if rows_affected(status) == 0:
                    raise InvalidState(
                        "a dispute needs a paid transaction; this one changed meanwhile"
                    )
                # Holding the row, see the dispute another process opened meanwhile, if any.
                other = await conn.fetchval(
                    "SELECT dispute_id FROM disputes WHERE transaction_id = $1 AND state = 'open'",
                    transaction.transaction_id,
                )
                if other is not None:
                    raise InvalidState(f"dispute {other} is already open")
                await conn.execute(
                    "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
                    " room_version, created_at, changed_at)"
                    " VALUES ($1, $2, $3, $4, 'open', $5, $6, $7)",
                    new.dispute_id,
                    transaction.transaction_id,
                    new.reason,
                    new.opened_by,
                    transaction.room_version,
                    notification.occurred_at,
                    self._clock.now_ms(),
                )
                now = self._clock.now_ms()
                await add_notifications(
                    conn, transaction.stream, [notification], retry_for_ms, now
                )
                await write_audit(conn, audit, notification.occurred_at)
                row = await conn.fetchrow(_SELECT + " WHERE dispute_id = $1", new.dispute_id)
        dispute = dispute_of(row)
        refuse_different(
            f"dispute {new.dispute_id}",
            ("transaction_id", new.transaction_id, dispute.transaction_id),
            ("reason", new.reason, dispute.reason),
            ("opened_by", new.opened_by, dispute.opened_by),
        )
        return dispute, created

    async def set_room(self, dispute_id: DisputeId, room_id: RoomId) -> None:
        await self._db.execute(
            "UPDATE disputes SET room_id = $2, changed_at = $3"
            " WHERE dispute_id = $1 AND room_id IS NULL",
            dispute_id,
            room_id,
            self._clock.now_ms(),
        )
        stored = await self._db.fetchval(
            "SELECT room_id FROM disputes WHERE dispute_id = $1", dispute_id
        )
        assert stored == room_id, "one room per dispute"

    async def resolve(
        self,
        dispute: DisputeRecord,
        resolution: Resolution,
        notification: Notification,
        audit: AuditEntry,
        stream: str,
        retry_for_ms: int,
    ) -> DisputeRecord | None:
        """Resolve and queue dispute.resolved in one transaction; None if it changed meanwhile."""
        async with self._db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE disputes SET state = 'resolved', decision = $2, note = $3,"
                " resolved_by = $4, source = $5, resolved_at = $6, changed_at = $7"
                " WHERE dispute_id = $1 AND state = 'open'",
                dispute.dispute_id,
                resolution.decision,
                resolution.note,
                resolution.resolved_by,
                resolution.source,
                notification.occurred_at,
                now := self._clock.now_ms(),
            )
            if rows_affected(status) == 0:
                return None
            await add_notifications(conn, stream, [notification], retry_for_ms, now)
            await write_audit(conn, audit, notification.occurred_at)
            await _clear_override(conn, dispute.transaction_id, now)
            await schedule_purge(
                conn,
                self._periods,
                dispute.room_id,
                "dispute",
                dispute.dispute_id,
                dispute.transaction_id,
                RESOLVED,
                notification.occurred_at,
            )
            row = await conn.fetchrow(_SELECT + " WHERE dispute_id = $1", dispute.dispute_id)
        return dispute_of(row)

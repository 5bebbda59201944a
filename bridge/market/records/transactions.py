"""The transactions table; a transaction's parties are joined from marketplace_users."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from bridge.delivery.outbox import add_notifications
from bridge.runtime.clock import Clock
from bridge.storage.database import rows_affected
from policy.ids import RoomId, TransactionId
from policy.notifications import Notification
from policy.retention import Periods
from policy.states import Access, Outcome, TransactionState, Transition

from ..errors import Conflict
from ..models import NewTransaction, Party, TransactionRecord
from .audit import AuditEntry, write_audit
from .purges import schedule_purge
from .users import bind_user

# A transaction with its parties, its open dispute and blocked invitations (``t``); a room's
# record selects them too (records/rooms.py).
COLUMNS = """
    t.transaction_id, t.title, t.state, t.outcome, t.room_id, t.room_version,
           t.created_at, t.paid_at, t.closed_at,
           t.buyer_id, b.matrix_id AS buyer_matrix_id,
           COALESCE(b.suspended_at, b.erased_at) AS buyer_suspended_at,
           t.seller_id, s.matrix_id AS seller_matrix_id,
           COALESCE(s.suspended_at, s.erased_at) AS seller_suspended_at,
           d.dispute_id AS open_dispute,
           EXISTS (SELECT 1 FROM blocked_invites x
                   WHERE x.room_id = t.room_id AND x.user_id = b.matrix_id) AS buyer_blocked,
           EXISTS (SELECT 1 FROM blocked_invites x
                   WHERE x.room_id = t.room_id AND x.user_id = s.matrix_id) AS seller_blocked,
           t.access_override, t.held_at, t.purged_at, t.transcript_hash
"""
JOINS = """
    JOIN marketplace_users b ON b.user_id = t.buyer_id
    JOIN marketplace_users s ON s.user_id = t.seller_id
    LEFT JOIN disputes d ON d.transaction_id = t.transaction_id AND d.state = 'open'
"""
_SELECT = f"SELECT {COLUMNS} FROM transactions t {JOINS}"  # noqa: S608 (constants)
# The columns of COLUMNS that `transaction_of` reads.
FIELDS = (
    *(
        f"{role}_{name}"
        for role in ("buyer", "seller")
        for name in ("id", "matrix_id", "suspended_at", "blocked")
    ),
    "transaction_id",
    "title",
    "state",
    "outcome",
    "room_id",
    "room_version",
    "created_at",
    "paid_at",
    "closed_at",
    "open_dispute",
    "access_override",
    "held_at",
    "purged_at",
    "transcript_hash",
)


def _party(row, role: str) -> Party:
    return Party(
        row[f"{role}_id"],
        row[f"{role}_matrix_id"],
        suspended=row[f"{role}_suspended_at"] is not None,
        invite_blocked=bool(row[f"{role}_blocked"]),
    )


def transaction_of(row) -> TransactionRecord:
    return TransactionRecord(
        transaction_id=row["transaction_id"],
        title=row["title"],
        buyer=_party(row, "buyer"),
        seller=_party(row, "seller"),
        state=TransactionState(row["state"]),
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        room_id=row["room_id"],
        room_version=row["room_version"],
        created_at=row["created_at"],
        paid_at=row["paid_at"],
        closed_at=row["closed_at"],
        open_dispute=row["open_dispute"],
        access_override=Access(row["access_override"]) if row["access_override"] else None,
        held_at=row["held_at"],
        purged_at=row["purged_at"],
        transcript_hash=row["transcript_hash"],
    )


async def fetch_transaction(
    conn: Connection, transaction_id: TransactionId
) -> TransactionRecord | None:
    row = await conn.fetchrow(_SELECT + " WHERE t.transaction_id = $1", transaction_id)
    return transaction_of(row) if row else None


class _DisputeOpenedMeanwhile(Exception):
    """Rolls back a transition that found a dispute opened by another process."""


class TransactionRecords:
    def __init__(self, db: Database, clock: Clock, periods: Periods) -> None:
        self._db = db
        self._clock = clock
        self._periods = periods

    async def get(self, transaction_id: TransactionId) -> TransactionRecord | None:
        row = await self._db.fetchrow(_SELECT + " WHERE t.transaction_id = $1", transaction_id)
        return transaction_of(row) if row else None

    async def insert(
        self, new: NewTransaction, room_version: str
    ) -> tuple[TransactionRecord, bool]:
        """Store a new transaction, or find the identical one; True when it is new.

        `Conflict` when the id exists with other content (naming the fields) or when a party's
        user id or Matrix ID is already bound to another.
        """
        now = self._clock.now_ms()
        async with self._db.acquire() as conn, conn.transaction():
            existing = await fetch_transaction(conn, new.transaction_id)
            inserted = None
            if existing is None:
                for role, party in (("buyer", new.buyer), ("seller", new.seller)):
                    await bind_user(conn, role, party, now)
                inserted = await conn.fetchval(
                    "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state,"
                    " room_version, created_at, changed_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                    " ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id",
                    new.transaction_id,
                    new.title,
                    new.buyer.user_id,
                    new.seller.user_id,
                    TransactionState.AWAITING_PAYMENT.value,
                    room_version,
                    now,
                )
            record = existing or await fetch_transaction(conn, new.transaction_id)
        assert record is not None
        refuse_different(
            f"transaction {new.transaction_id}",
            ("title", new.title, record.title),
            ("buyer", new.buyer, record.buyer),
            ("seller", new.seller, record.seller),
        )
        return record, inserted is not None

    async def set_room(self, transaction_id: TransactionId, room_id: RoomId) -> None:
        await self._db.execute(
            "UPDATE transactions SET room_id = $2, changed_at = $3"
            " WHERE transaction_id = $1 AND room_id IS NULL",
            transaction_id,
            room_id,
            self._clock.now_ms(),
        )
        stored = await self._db.fetchval(
            "SELECT room_id FROM transactions WHERE transaction_id = $1", transaction_id
        )
        assert stored == room_id, "one room per transaction"

    async def set_override(self, transaction_id: TransactionId, override: Access | None) -> None:
        await self._db.execute(
            "UPDATE transactions SET access_override = $2, changed_at = $3"
            " WHERE transaction_id = $1",
            transaction_id,
            override.value if override else None,
            self._clock.now_ms(),
        )

    async def apply_transition(
        self,
        record: TransactionRecord,
        transition: Transition,
        notification: Notification,
        audit: AuditEntry,
        retry_for_ms: int,
    ) -> TransactionRecord | None:
        """Write a decided transition, its audit entry and its notification in one database
        transaction, provided the state is still the one the transition was decided on (else
        None: another bridge process changed it meanwhile)."""
        stamp = "paid_at" if transition.state is TransactionState.PAID else "closed_at"
        try:
            async with self._db.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    f"UPDATE transactions SET state = $2, outcome = $3, {stamp} = $4,"  # noqa: S608
                    " access_override = NULL, changed_at = $6"
                    " WHERE transaction_id = $1 AND state = $5",
                    record.transaction_id,
                    transition.state.value,
                    transition.outcome.value if transition.outcome else None,
                    notification.occurred_at,
                    record.state.value,
                    self._clock.now_ms(),
                )
                if rows_affected(status) == 0:
                    return None
                # The UPDATE holds the row, which opening a dispute takes first
                # (DisputeRecords.insert): a dispute another process opened meanwhile is
                # visible now. Undo, and decide again.
                if await conn.fetchval(
                    "SELECT 1 FROM disputes WHERE transaction_id = $1 AND state = 'open'",
                    record.transaction_id,
                ):
                    raise _DisputeOpenedMeanwhile
                now = self._clock.now_ms()
                await add_notifications(conn, record.stream, [notification], retry_for_ms, now)
                await write_audit(conn, audit, notification.occurred_at)
                if transition.outcome is not None:
                    await schedule_purge(
                        conn,
                        self._periods,
                        record.room_id,
                        "transaction",
                        record.transaction_id,
                        record.transaction_id,
                        transition.outcome.value,
                        notification.occurred_at,
                    )
                updated = await fetch_transaction(conn, record.transaction_id)
        except _DisputeOpenedMeanwhile:
            return None
        assert updated is not None
        return updated


def refuse_different(what: str, *fields: tuple[str, object, object]) -> None:
    """`Conflict` naming every field a repeated create changed: ids are not reused for other
    things."""
    differing = [name for name, ours, theirs in fields if ours != theirs]
    if differing:
        raise Conflict(f"{what} exists with a different " + ", ".join(differing), differing)

"""Legal holds: a transaction's rooms kept, and its parties' data with them, while a claim
may need them (GDPR Art. 17(3)(e)).

    place(transaction, reason)    a manual hold (audited); placing it again changes nothing
    release(transaction, reason)  the manual hold lifted (audited); a dispute's hold cannot be
    on(transaction) / all() / of_user(user)   the holds in force

Every dispute holds its transaction's rooms while open and ``hold_after_resolution`` after it
is resolved. A held room is never purged (bridge.retention); a party to a held transaction
cannot be erased (bridge.identity).
"""

from __future__ import annotations

from mautrix.util.async_db import Database

from bridge.runtime.clock import Clock
from policy.ids import MarketUserId, TransactionId
from policy.retention import Hold

from .errors import InvalidState, NotFound
from .models import TransactionRecord
from .records.audit import AuditEntry, write_audit
from .records.holds import ALL, OF_USER, ONE, holds_where, place_hold, release_hold
from .records.transactions import fetch_transaction


class HeldByDispute(InvalidState):
    """Only a dispute holds the transaction: its hold ends with time, not by request."""


class LegalHolds:
    def __init__(self, db: Database, hold_after_ms: int, clock: Clock) -> None:
        self._db = db
        self._hold_after_ms = hold_after_ms
        self._clock = clock

    async def place(
        self, transaction_id: TransactionId, reason: str, actor: str
    ) -> tuple[TransactionRecord, list[Hold], bool]:
        """The transaction, its holds and whether this call placed the manual one."""
        now = self._clock.now_ms()
        async with self._db.acquire() as conn, conn.transaction():
            record = await self._existing(conn, transaction_id)
            placed = await place_hold(conn, transaction_id, reason, actor, now)
            if placed:
                await write_audit(conn, _entry(record, actor, "hold.placed", reason), now)
            holds = await holds_where(conn, ONE, self._hold_after_ms, now, transaction_id)
            record = await fetch_transaction(conn, transaction_id)
        assert record is not None
        return record, holds, placed

    async def release(
        self, transaction_id: TransactionId, reason: str, actor: str
    ) -> tuple[TransactionRecord, list[Hold]]:
        """The transaction and the holds left on it."""
        now = self._clock.now_ms()
        async with self._db.acquire() as conn, conn.transaction():
            record = await self._existing(conn, transaction_id)
            if await release_hold(conn, transaction_id):
                await write_audit(conn, _entry(record, actor, "hold.released", reason), now)
            else:
                held = await holds_where(conn, ONE, self._hold_after_ms, now, transaction_id)
                if held:
                    raise HeldByDispute(
                        f"transaction {transaction_id} has no manual hold; it is held by "
                        + "; ".join(hold.describe() for hold in held)
                        + ", which ends by itself"
                    )
                raise NotFound(f"transaction {transaction_id} has no legal hold")
            holds = await holds_where(conn, ONE, self._hold_after_ms, now, transaction_id)
            record = await fetch_transaction(conn, transaction_id)
        assert record is not None
        return record, holds

    async def on(self, transaction_id: TransactionId) -> list[Hold]:
        now = self._clock.now_ms()
        return await holds_where(self._db, ONE, self._hold_after_ms, now, transaction_id)

    async def all(self) -> list[Hold]:
        return await holds_where(self._db, ALL, self._hold_after_ms, self._clock.now_ms())

    async def of_user(self, user_id: MarketUserId) -> list[Hold]:
        now = self._clock.now_ms()
        return await holds_where(self._db, OF_USER, self._hold_after_ms, now, user_id)

    @staticmethod
    async def _existing(conn, transaction_id: TransactionId) -> TransactionRecord:
        record = await fetch_transaction(conn, transaction_id)
        if record is None:
            raise NotFound(f"no transaction {transaction_id}")
        return record


def _entry(record: TransactionRecord, actor: str, action: str, reason: str) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action=action,
        room_id=record.room_id or "",
        reason=reason,
        detail=f"transaction {record.transaction_id}",
        transaction_id=record.transaction_id,
    )

"""What admins do to a room beyond the marketplace's transitions: lock or unlock a transaction
room until the marketplace's next change, and remove someone who is not a party."""

from __future__ import annotations

from appservice.matrix import MatrixBot
from bridge.runtime.locks import KeyedLocks
from policy.ids import DisputeId, RoomId, TransactionId, UserId
from policy.states import Access, TransactionState

from .errors import InvalidState, NotFound
from .models import TransactionRecord
from .records.audit import AuditEntry, AuditLog
from .records.disputes import DisputeRecords
from .records.transactions import TransactionRecords
from .transactions import Transactions

REMOVED = "removed by the marketplace's admins"


class Moderation:
    def __init__(
        self,
        transactions: Transactions,
        transaction_records: TransactionRecords,
        disputes: DisputeRecords,
        bot: MatrixBot,
        audit: AuditLog,
        locks: KeyedLocks,
    ) -> None:
        self._transactions = transactions
        self._transaction_records = transaction_records
        self._disputes = disputes
        self._bot = bot
        self._audit = audit
        self._locks = locks

    async def set_override(
        self, transaction_id: TransactionId, access: Access, actor: str
    ) -> TransactionRecord:
        """An admin's lock (Access.LOCKED) or unlock (Access.OPEN) of a transaction room."""
        async with self._locks.hold(transaction_id):
            record = await self._transactions.get(transaction_id)
            if record.state is TransactionState.CLOSED:
                raise InvalidState("the transaction is closed; its room is archived")
            await self._transaction_records.set_override(transaction_id, access)
            updated = await self._transactions.get(transaction_id)
            before, after = self._transactions.access(record), self._transactions.access(updated)
            await self._audit.write(
                AuditEntry(
                    actor=actor,
                    action="room.state_changed",
                    room_id=record.room_id or "",
                    reason="lock" if access is Access.LOCKED else "unlock",
                    detail=f"room {before} -> {after}",
                    transaction_id=transaction_id,
                )
            )
            return await self._transactions.ensure_room(updated, changing=True)

    async def remove_member(self, user_id: UserId, object_id: str, actor: str) -> RoomId:
        """Kick someone who is not a party from a transaction's or dispute's room."""
        record = await self._transaction_records.get(TransactionId(object_id))
        dispute = None
        if record is None:
            dispute = await self._disputes.get(DisputeId(object_id))
            if dispute is not None:
                record = await self._transactions.get(dispute.transaction_id)
        if record is None:
            raise NotFound(f"no transaction or dispute {object_id}")
        if user_id in (*record.parties, self._bot.user_id):
            raise InvalidState("parties and the bot stay while the deal lasts")
        room_id = dispute.room_id if dispute else record.room_id
        if room_id is None:
            raise InvalidState(f"{object_id} has no room yet")
        await self._bot.kick(room_id, user_id, REMOVED)
        await self._audit.write(
            AuditEntry(actor, "member.removed", room_id, subject=user_id, reason=REMOVED)
        )
        return room_id

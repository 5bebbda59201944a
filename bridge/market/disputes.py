"""Disputes: open one on a paid transaction, resolve it, and keep its room as it says.

    open    -> lock the transaction -> decide (policy.states) -> store with dispute.opened and
               its audit entry -> tell the admins -> the dispute's room (parties and admins)
               -> the transaction room frozen, admins invited to read it -> a link notice
    resolve -> decide -> store with dispute.resolved (again if another process resolved it
               meanwhile) -> the dispute room archived, the transaction room thawed

Resolving never changes the transaction: money and its state stay the marketplace's.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.runtime.clock import Clock
from bridge.runtime.locks import KeyedLocks
from bridge.runtime.workers import Wakeup
from policy.ids import DisputeId
from policy.notices import dispute_link_notice
from policy.notifications import dispute_notification
from policy.states import DisputeState, InvalidTransition, decide_open_dispute, decide_resolve

from .errors import InvalidRequest, InvalidState, NotFound
from .keeper import RoomKeeper
from .management import ManagementRoom
from .models import DisputeRecord, NewDispute, Resolution, TransactionRecord, room_context
from .records.audit import AuditEntry
from .records.disputes import DisputeRecords
from .records.transactions import TransactionRecords
from .rooms import DisputeRoom, RoomPlanner
from .transactions import Transactions
from .transitions import settle


class Disputes:
    def __init__(
        self,
        records: DisputeRecords,
        transaction_records: TransactionRecords,
        transactions: Transactions,
        planner: RoomPlanner,
        keeper: RoomKeeper,
        management: ManagementRoom,
        locks: KeyedLocks,
        clock: Clock,
        outbox: Wakeup,
        decisions: list[str],
        retry_for_ms: int,
    ) -> None:
        self._records = records
        self._transaction_records = transaction_records
        self._transactions = transactions
        self._planner = planner
        self._keeper = keeper
        self._management = management
        self._locks = locks
        self._clock = clock
        self._outbox = outbox
        self._decisions = decisions
        self._retry_for_ms = retry_for_ms

    async def get(self, dispute_id: DisputeId) -> DisputeRecord:
        dispute = await self._records.get(dispute_id)
        if dispute is None:
            raise NotFound(f"no dispute {dispute_id}")
        return dispute

    async def open(self, new: NewDispute) -> tuple[DisputeRecord, bool]:
        """The dispute and its room; True when this call opened it."""
        async with self._locks.hold(new.transaction_id):
            transaction = await self._transactions.get(new.transaction_id)
            if await self._records.get(new.dispute_id) is None:
                try:
                    decide_open_dispute(transaction.state, transaction.open_dispute)
                except InvalidTransition as e:
                    raise InvalidState(str(e)) from None
            # dispute.* notifications belong to the transaction room's stream and context.
            context = room_context(
                transaction, self._planner.bot, self._planner.admins, links=self._planner.links
            )
            notification = dispute_notification(
                replace(context, dispute_id=new.dispute_id),
                "dispute.opened",
                {"reason": new.reason, "opened_by": new.opened_by},
                self._clock.now_ms(),
            )
            audit = AuditEntry(
                actor="marketplace",
                action="dispute.opened",
                room_id=transaction.room_id or "",
                reason=new.reason,
                detail=f"opened by the {new.opened_by}",
                transaction_id=transaction.transaction_id,
                dispute_id=new.dispute_id,
            )
            dispute, created = await self._records.insert(
                new, transaction, notification, audit, self._retry_for_ms
            )
            if created:
                self._outbox.set()
            if dispute.state is DisputeState.OPEN:  # again on a retry: a failed post is made
                await self._management.announce(
                    f"dispute:{dispute.dispute_id}",
                    f"Dispute {dispute.dispute_id} opened by the {dispute.opened_by} on "
                    f"transaction {transaction.transaction_id} (“{transaction.title}”): "
                    f"{dispute.reason}",
                )
            transaction = await self._transactions.get(new.transaction_id)
            dispute = await self.ensure_room(dispute, transaction)
            transaction = await self._transactions.ensure_room(
                transaction, check_members=True, changing=True
            )
            if dispute.state is DisputeState.OPEN and transaction.room_id and dispute.room_id:
                key = (
                    f"transaction:{transaction.transaction_id}:notice:dispute:{dispute.dispute_id}"
                )
                await self._keeper.post_once(
                    transaction.room_id, (key, dispute_link_notice(dispute.room_id))
                )
            return dispute, created

    async def resolve(self, dispute_id: DisputeId, resolution: Resolution) -> DisputeRecord:
        if resolution.decision not in self._decisions:
            raise InvalidRequest(
                "decision: must be one of " + ", ".join(self._decisions), ["decision"]
            )
        dispute = await self.get(dispute_id)
        async with self._locks.hold(dispute.transaction_id):
            dispute, changed = await settle(
                lambda: self.get(dispute_id),
                lambda dispute: (
                    resolution
                    if decide_resolve(dispute.state, dispute.decision, resolution.decision)
                    else None
                ),
                self._apply_resolution,
            )
            if changed:
                self._outbox.set()
            transaction = await self._transactions.get(dispute.transaction_id)
            dispute = await self.ensure_room(dispute, transaction, changing=True)
            await self._transactions.ensure_room(transaction, changing=True)
            return dispute

    async def ensure_room(
        self, dispute: DisputeRecord, transaction: TransactionRecord, *, changing: bool = False
    ) -> DisputeRecord:
        """Make the dispute's room match it (see `RoomKeeper.ensure`); the latest record.
        A room whose removal was announced (retention) is left to the homeserver."""
        if dispute.purged_at is not None:
            return dispute
        room = DisputeRoom(
            self._planner,
            self._records,
            self._transaction_records,
            dispute.dispute_id,
            (dispute, transaction),
        )
        await self._keeper.ensure(room, check_members=True, changing=changing)
        assert room.record is not None and room.record.room_id is not None
        return room.record

    async def repair(self, dispute_id: DisputeId, *, changing: bool = False) -> None:
        dispute = await self.get(dispute_id)
        async with self._locks.hold(dispute.transaction_id):
            dispute = await self.get(dispute_id)
            transaction = await self._transactions.get(dispute.transaction_id)
            await self.ensure_room(dispute, transaction, changing=changing)

    async def _apply_resolution(
        self, dispute: DisputeRecord, resolution: Resolution
    ) -> DisputeRecord | None:
        transaction = await self._transactions.get(dispute.transaction_id)
        context = room_context(
            transaction, self._planner.bot, self._planner.admins, links=self._planner.links
        )
        details = {
            "decision": resolution.decision,
            "note": resolution.note,
            "resolved_by": resolution.resolved_by,
            "source": resolution.source,
        }
        notification = dispute_notification(
            replace(context, dispute_id=dispute.dispute_id),
            "dispute.resolved",
            details,
            self._clock.now_ms(),
        )
        audit = AuditEntry(
            actor=resolution.resolved_by,
            action="dispute.resolved",
            room_id=dispute.room_id or "",
            reason=resolution.decision,
            detail=resolution.note,
            transaction_id=transaction.transaction_id,
            dispute_id=dispute.dispute_id,
        )
        return await self._records.resolve(
            dispute, resolution, notification, audit, transaction.stream, self._retry_for_ms
        )

"""Transactions: create, pay, close, read; each keeps its room as its state says.

    API call -> lock the transaction (in process) -> decide (policy.states) -> store, with its
             notification and audit entry in the same database transaction (transitions.settle
             decides again if another process changed it meanwhile) -> the room keeper makes
             the room match (created under its alias on the first call)

Every step is idempotent, so a call that failed half-way (the homeserver down: the API answers
503) completes the same room when the marketplace retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bridge.runtime.clock import Clock
from bridge.runtime.locks import KeyedLocks
from bridge.runtime.workers import Wakeup
from policy.ids import TransactionId
from policy.notifications import state_notification
from policy.states import Access, Outcome, Transition, decide_close, decide_payment

from .errors import NotFound
from .keeper import RoomKeeper
from .models import NewTransaction, TransactionRecord, room_context
from .parties import PartyCheck
from .records.audit import AuditEntry
from .records.chats import Chat
from .records.transactions import TransactionRecords
from .rooms import RoomPlanner, TransactionRoom
from .transitions import settle


def _if_changed(transition: Transition) -> Transition | None:
    return transition if transition.changed else None


class Transactions:
    def __init__(
        self,
        records: TransactionRecords,
        planner: RoomPlanner,
        keeper: RoomKeeper,
        parties: PartyCheck,
        locks: KeyedLocks,
        clock: Clock,
        outbox: Wakeup,
        room_version: str,
        retry_for_ms: int,
    ) -> None:
        self._records = records
        self._planner = planner
        self._keeper = keeper
        self._parties = parties
        self._locks = locks
        self._clock = clock
        self._outbox = outbox
        self._room_version = room_version
        self._retry_for_ms = retry_for_ms

    def access(self, room: TransactionRecord | Chat) -> Access:
        return self._planner.access(room)

    async def find(self, transaction_id: TransactionId) -> TransactionRecord | None:
        return await self._records.get(transaction_id)

    async def get(self, transaction_id: TransactionId) -> TransactionRecord:
        record = await self._records.get(transaction_id)
        if record is None:
            raise NotFound(f"no transaction {transaction_id}")
        return record

    async def create(self, new: NewTransaction) -> tuple[TransactionRecord, bool]:
        """The transaction and its room; True when this call created the transaction."""
        async with self._locks.hold(new.transaction_id):
            if await self._records.get(new.transaction_id) is None:
                await self._parties.check(new.buyer, new.seller)
            record, created = await self._records.insert(new, self._room_version)
            # A retry of a create that failed half-way also admits whoever it had not yet.
            await self.ensure_room(record, check_members=not created)
            # Read after the invitations: one the invitee blocks shows in the answer.
            return await self.get(new.transaction_id), created

    async def record_payment(self, transaction_id: TransactionId) -> TransactionRecord:
        def decide(record: TransactionRecord) -> Transition | None:
            dispute_open = record.open_dispute is not None
            return _if_changed(decide_payment(record.state, record.outcome, dispute_open))

        return await self._transition(transaction_id, "payment", decide)

    async def close(self, transaction_id: TransactionId, outcome: Outcome) -> TransactionRecord:
        def decide(record: TransactionRecord) -> Transition | None:
            dispute_open = record.open_dispute is not None
            return _if_changed(decide_close(record.state, record.outcome, outcome, dispute_open))

        return await self._transition(transaction_id, outcome.value, decide)

    async def ensure_room(
        self, record: TransactionRecord, *, check_members: bool = False, changing: bool = False
    ) -> TransactionRecord:
        """Make the transaction's room match it (see `RoomKeeper.ensure`); the latest record.
        A room whose removal was announced (retention) is left to the homeserver."""
        if record.purged_at is not None:
            return record
        room = TransactionRoom(self._planner, self._records, record.transaction_id, record)
        await self._keeper.ensure(room, check_members=check_members, changing=changing)
        assert room.record is not None and room.record.room_id is not None
        return room.record

    async def repair(self, transaction_id: TransactionId, *, changing: bool = False) -> None:
        """Put the room back to its plan, members included (drift, or a mute's change)."""
        async with self._locks.hold(transaction_id):
            record = await self.get(transaction_id)
            await self.ensure_room(record, check_members=True, changing=changing)

    async def _transition(
        self,
        transaction_id: TransactionId,
        cause: str,
        decide: Callable[[TransactionRecord], Transition | None],
    ) -> TransactionRecord:
        async with self._locks.hold(transaction_id):
            record, changed = await settle(
                lambda: self.get(transaction_id),
                decide,
                lambda record, transition: self._apply(record, transition, cause),
            )
            if changed:
                self._outbox.set()
            return await self.ensure_room(record, changing=True)

    async def _apply(
        self, record: TransactionRecord, transition: Transition, cause: str
    ) -> TransactionRecord | None:
        previous = self.access(record)
        # The transition clears an admin's lock or unlock: the new access is the state's own.
        after = replace(record, state=transition.state, access_override=None)
        access = self.access(after)
        context = room_context(
            record, self._planner.bot, self._planner.admins, links=self._planner.links
        )
        notification = state_notification(
            context, access.value, previous.value, cause, self._clock.now_ms()
        )
        audit = AuditEntry(
            actor="marketplace",
            action="room.state_changed",
            room_id=record.room_id or "",
            reason=cause,
            detail=f"{record.state} -> {transition.state}; room {previous} -> {access}",
            transaction_id=record.transaction_id,
        )
        return await self._records.apply_transition(
            record, transition, notification, audit, self._retry_for_ms
        )

"""What each managed room must be: its plan, who may be in it, and the notices it carries.

    TransactionRoom   access from the transaction's state (locked, open, frozen, archived),
                      the parties (and the admins while a dispute is open), milestone notices
    DisputeRoom       the parties and the admins, open until resolved, opened/resolved notices
    ManagementRoom    the admins' room (bridge.market.management): its members only

Each adapter reads its object afresh on every `spec()` after the first, so the room keeper
can tell when another bridge process changed the object while it wrote the room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from bridge.runtime.clock import Clock
from policy.ids import DisputeId, RoomId, TransactionId, UserId
from policy.links import RoomLinks
from policy.membership import allowed_members
from policy.notices import (
    Milestone,
    Notice,
    dispute_opened_notice,
    dispute_resolved_notice,
    transaction_notice,
)
from policy.rooms import Participants, RoomKind, RoomPlan, plan_room
from policy.states import Access, DisputeState, TransactionState

from .errors import NotFound
from .models import DisputeRecord, TransactionRecord
from .records.chats import Chat
from .records.disputes import DisputeRecords
from .records.mutes import Mutes
from .records.transactions import TransactionRecords


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """One managed room as its object's latest record says it must be."""

    kind: RoomKind
    key: str  # the object's id: the room's alias is reserved for it
    what: str  # the object, for the audit trail ("transaction order-1")
    room_id: RoomId | None  # None until the room is made
    room_version: str
    plan: RoomPlan
    allowed: frozenset[UserId]  # who may be in the room; anyone else is removed
    notices: tuple[tuple[str, Notice], ...] = ()  # (key, notice): each posted once
    holds_state: bool = True  # False: only members are kept (a room the operator may own)


class ManagedRoom(Protocol):
    """A marketplace object's room, as the room keeper sees it."""

    async def spec(self) -> RoomSpec:
        """What the room must be now."""
        ...

    async def remember(self, room_id: RoomId) -> None:
        """Store the room made (or adopted) for the object."""
        ...


class RoomPlanner:
    """Plans the rooms of transactions and disputes from their records.

    A title or a dispute's reason may come from a party (a listing's title, a complaint): what
    the bot writes into a room (its name, its notices) has their contact details masked.
    """

    def __init__(
        self,
        bot: UserId,
        admins: tuple[UserId, ...],
        freeze_on_dispute: bool,
        mutes: Mutes,
        clock: Clock,
        mask: Callable[[str], str],
        links: RoomLinks | None = None,
    ) -> None:
        self.bot = bot
        self.admins = admins
        self.links = links  # each room's deep links, in its notifications
        self._freeze_on_dispute = freeze_on_dispute
        self._mutes = mutes
        self._clock = clock
        self._mask = mask

    def access(self, room: TransactionRecord | Chat) -> Access:
        """Who may post in a transaction's room, or in a chat's."""
        return room.access(self._freeze_on_dispute)

    def participants(self, transaction: TransactionRecord | None = None) -> Participants:
        parties = transaction.admitted if transaction else ()
        return Participants(bot=self.bot, parties=parties, admins=self.admins)

    async def _muted(self, room_id: RoomId | None) -> tuple[UserId, ...]:
        if room_id is None:
            return ()
        return await self._mutes.muted(room_id, self._clock.now_ms())

    async def transaction(self, record: TransactionRecord) -> RoomSpec:
        participants = self.participants(record)
        title = self._mask(record.title)
        plan = plan_room(
            RoomKind.TRANSACTION,
            self.access(record),
            participants,
            record.room_version,
            title,
            await self._muted(record.room_id),
            by_admins=record.overridden(self._freeze_on_dispute),
        )
        if record.open_dispute is not None:
            # Admins join the transaction room to read its history as evidence.
            plan = replace(plan, invitees=plan.invitees + participants.admins)
        reached = [Milestone.CREATED]
        if record.paid_at is not None:
            reached.append(Milestone.PAID)
        if record.state is TransactionState.CLOSED:
            reached.append(Milestone.CLOSED)
        notices = tuple(
            (
                f"transaction:{record.transaction_id}:notice:{milestone.value}",
                transaction_notice(milestone, title, record.outcome),
            )
            for milestone in reached
        )
        return RoomSpec(
            RoomKind.TRANSACTION,
            record.transaction_id,
            f"transaction {record.transaction_id}",
            record.room_id,
            record.room_version,
            plan,
            allowed_members(RoomKind.TRANSACTION, participants),
            notices,
        )

    async def dispute(self, dispute: DisputeRecord, transaction: TransactionRecord) -> RoomSpec:
        participants = self.participants(transaction)
        title = self._mask(transaction.title)
        plan = plan_room(
            RoomKind.DISPUTE,
            dispute.access,
            participants,
            dispute.room_version,
            title,
            await self._muted(dispute.room_id),
        )
        key = f"dispute:{dispute.dispute_id}:notice"
        opened = dispute_opened_notice(
            title, transaction.transaction_id, self._mask(dispute.reason), dispute.opened_by
        )
        notices = [(f"{key}:opened", opened)]
        if dispute.state is DisputeState.RESOLVED:
            note = self._mask(dispute.note or "")
            resolved = dispute_resolved_notice(dispute.decision or "", note)
            notices.append((f"{key}:resolved", resolved))
        return RoomSpec(
            RoomKind.DISPUTE,
            dispute.dispute_id,
            f"dispute {dispute.dispute_id}",
            dispute.room_id,
            dispute.room_version,
            plan,
            allowed_members(RoomKind.DISPUTE, participants),
            tuple(notices),
        )


class TransactionRoom:
    """A transaction's room; ``record`` is the transaction as last read."""

    def __init__(
        self,
        planner: RoomPlanner,
        records: TransactionRecords,
        transaction_id: TransactionId,
        record: TransactionRecord | None = None,
    ) -> None:
        self._planner = planner
        self._records = records
        self._transaction_id = transaction_id
        self._given = record
        self.record = record

    async def spec(self) -> RoomSpec:
        record, self._given = self._given, None
        if record is None:
            record = await self._records.get(self._transaction_id)
            if record is None:
                raise NotFound(f"no transaction {self._transaction_id}")
        self.record = record
        return await self._planner.transaction(record)

    async def remember(self, room_id: RoomId) -> None:
        await self._records.set_room(self._transaction_id, room_id)
        if self.record is not None:
            self.record = replace(self.record, room_id=room_id)


class DisputeRoom:
    """A dispute's room; ``record`` is the dispute as last read."""

    def __init__(
        self,
        planner: RoomPlanner,
        disputes: DisputeRecords,
        transactions: TransactionRecords,
        dispute_id: DisputeId,
        given: tuple[DisputeRecord, TransactionRecord] | None = None,
    ) -> None:
        self._planner = planner
        self._disputes = disputes
        self._transactions = transactions
        self._dispute_id = dispute_id
        self._given = given
        self.record = given[0] if given else None

    async def spec(self) -> RoomSpec:
        given, self._given = self._given, None
        if given is None:
            dispute = await self._disputes.get(self._dispute_id)
            if dispute is None:
                raise NotFound(f"no dispute {self._dispute_id}")
            transaction = await self._transactions.get(dispute.transaction_id)
            assert transaction is not None
            given = dispute, transaction
        self.record = given[0]
        return await self._planner.dispute(*given)

    async def remember(self, room_id: RoomId) -> None:
        await self._disputes.set_room(self._dispute_id, room_id)
        if self.record is not None:
            self.record = replace(self.record, room_id=room_id)

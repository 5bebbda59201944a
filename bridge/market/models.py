"""The marketplace's objects as the bridge keeps them, and what follows from them.

Room access is decided here, from the records, by `policy.states`; storage only stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from policy.ids import DisputeId, MarketUserId, RoomId, TransactionId, UserId
from policy.links import RoomLinks
from policy.notifications import Participant, RoomContext
from policy.rooms import RoomKind
from policy.states import (
    Access,
    DisputeState,
    Outcome,
    TransactionState,
    dispute_access,
    transaction_access,
)

Opener = Literal["buyer", "seller", "marketplace"]


@dataclass(frozen=True, slots=True)
class Party:
    user_id: MarketUserId
    matrix_id: UserId
    suspended: bool = field(default=False, compare=False)  # kept out of every room we manage
    invite_blocked: bool = field(default=False, compare=False)  # refuses the room's invitation


@dataclass(frozen=True, slots=True)
class NewTransaction:
    """What the marketplace asks for when it creates a transaction."""

    transaction_id: TransactionId
    title: str
    buyer: Party
    seller: Party


@dataclass(frozen=True, slots=True)
class NewDispute:
    dispute_id: DisputeId
    transaction_id: TransactionId
    reason: str
    opened_by: Opener


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    transaction_id: TransactionId
    title: str
    buyer: Party
    seller: Party
    state: TransactionState
    outcome: Outcome | None
    room_id: RoomId | None
    room_version: str
    created_at: int
    paid_at: int | None
    closed_at: int | None
    open_dispute: DisputeId | None = None
    access_override: Access | None = None  # an admin's lock or unlock
    held_at: int | None = None  # a legal hold placed through the API (bridge.market.holds)
    purged_at: int | None = None  # its room's removal announced (bridge.retention)
    transcript_hash: str | None = None  # the final hash of the transcript exported before

    @property
    def parties(self) -> tuple[UserId, UserId]:
        return self.buyer.matrix_id, self.seller.matrix_id

    @property
    def admitted(self) -> tuple[UserId, ...]:
        """The parties who may be in its rooms now: those not suspended."""
        return tuple(p.matrix_id for p in (self.buyer, self.seller) if not p.suspended)

    @property
    def stream(self) -> str:
        """The outbox stream its notifications go out in, in order: its room, or the
        transaction itself before the room exists."""
        return self.room_id or f"transaction:{self.transaction_id}"

    def access(self, freeze_on_dispute: bool) -> Access:
        """Who may post in the transaction's room now."""
        return transaction_access(
            self.state, self.open_dispute is not None, freeze_on_dispute, self.access_override
        )

    def overridden(self, freeze_on_dispute: bool) -> bool:
        """Whether an admin's lock or unlock gives its room another access than its state."""
        own = transaction_access(self.state, self.open_dispute is not None, freeze_on_dispute)
        return self.access(freeze_on_dispute) is not own


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    dispute_id: DisputeId
    transaction_id: TransactionId
    reason: str
    opened_by: Opener
    state: DisputeState
    decision: str | None
    note: str | None
    resolved_by: str | None
    source: Literal["api", "matrix"] | None
    room_id: RoomId | None
    room_version: str
    created_at: int
    resolved_at: int | None
    purged_at: int | None = None  # its room's removal announced (bridge.retention)
    transcript_hash: str | None = None  # the final hash of the transcript exported before

    @property
    def access(self) -> Access:
        return dispute_access(self.state)


@dataclass(frozen=True, slots=True)
class Resolution:
    """How a dispute ends: the decision (one of the configured ones), by whom, from where."""

    decision: str
    note: str
    resolved_by: str
    source: Literal["api", "matrix"]


def room_access(
    transaction: TransactionRecord, dispute: DisputeRecord | None, freeze_on_dispute: bool
) -> Access:
    """Who may post in the transaction's room, or in this dispute's room."""
    return dispute.access if dispute is not None else transaction.access(freeze_on_dispute)


def room_context(
    transaction: TransactionRecord,
    bot: UserId,
    admins: tuple[UserId, ...],
    dispute: DisputeRecord | None = None,
    links: RoomLinks | None = None,
) -> RoomContext:
    """Who is in the transaction's room (or its dispute's), as notifications describe them,
    and the room's deep links."""
    kind, key = (
        (RoomKind.DISPUTE, dispute.dispute_id)
        if dispute
        else (RoomKind.TRANSACTION, transaction.transaction_id)
    )
    return RoomContext(
        room_id=(dispute.room_id if dispute else transaction.room_id) or RoomId(""),
        kind=kind,
        transaction_id=transaction.transaction_id,
        dispute_id=dispute.dispute_id if dispute else None,
        participants=(
            Participant(transaction.buyer.user_id, transaction.buyer.matrix_id, "buyer"),
            Participant(transaction.seller.user_id, transaction.seller.matrix_id, "seller"),
            *(Participant(None, admin, "admin") for admin in admins),
        ),
        bot=bot,
        links=links.of(kind, key) if links else {},
    )

"""What the inbox worker decides about an event, and what it hands on once the event's writes
are committed (bridge.homeserver.inbox_worker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.delivery.outbox import OutboxRow
from bridge.policybot.enforcer import NOTHING, Enforcement, Room
from policy.notifications import MessageRecord, Notification
from policy.rooms import RoomKind


class Delivery(Protocol):
    """The outbox worker, as the inbox hands it what it queued (`OutboxWorker`)."""

    def accepts(self, now: int) -> int: ...

    async def take(self, rows: list[OutboxRow], lease_end: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    notifications: list[Notification] = field(default_factory=list)
    record: MessageRecord | None = None  # for the chat list
    kind: RoomKind | None = None  # None: a room we do not manage
    enforcement: Enforcement = NOTHING
    room: Room | None = None  # a transaction's or a dispute's room
    event: dict | None = None  # the event as parsed for deciding
    unread: int | None = None  # a read: what the reader has left unread
    removed: bool = False  # its room was removed for retention: the event is dropped


@dataclass(frozen=True, slots=True)
class Processed:
    """An event whose writes are committed, and what follows from it."""

    event: Any  # as parsed
    decision: Decision
    queued: int  # webhooks
    handed_over: list[OutboxRow]  # of them, leased until lease_end, for the outbox worker
    lease_end: int
    command: bool  # an admin command, run once the event is marked done

"""What the inbox worker decides about an event (`Decider`), and what it hands on once the
event's writes are committed (bridge.homeserver.inbox_worker)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from mautrix.util.async_db import Connection

from bridge.delivery.outbox import OutboxRow
from bridge.market.management import ManagementRoom
from bridge.market.models import room_context
from bridge.market.records.messages import unread_count
from bridge.market.records.rooms import Owner
from bridge.policybot.enforcer import NOTHING, Enforcement, Enforcer, Room
from bridge.policybot.history import History
from policy.ids import RoomId, UserId
from policy.links import RoomLinks
from policy.notifications import (
    MessageRecord,
    Notification,
    message_notifications,
    read_notification,
    related_event_id,
)
from policy.rooms import RoomKind

from .inbox import RECEIPT_EVENT_TYPE, StoredEvent, sender_of

# What is never notified of a message (or an edit) the policy bot removes.
WITHHELD = frozenset({"message.created", "message.edited"})


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


class Decider:
    """What a room event means: notifications, the chat list's record, the policy bot's
    verdict."""

    def __init__(
        self,
        bot: UserId,
        admins: tuple[UserId, ...],
        enforcer: Enforcer,
        management: ManagementRoom,
        links: RoomLinks | None,
    ) -> None:
        self._bot = bot
        self._admins = admins
        self._enforcer = enforcer
        self._management = management
        self._links = links
        self._log = logging.getLogger("bridge.homeserver.inbox")

    async def decide(
        self,
        conn: Connection,
        stored: StoredEvent,
        event: Any,
        owner: Owner | None,
        history: History | None,
        now: int,
    ) -> Decision:
        """What the event means: notifications, chat list record, the policy bot's actions."""
        room_id = stored.room_id
        if owner is None:
            if room_id != self._management.room_id or stored.event_type == RECEIPT_EVENT_TYPE:
                return Decision()  # not a room we manage
            room = Room(RoomKind.MANAGEMENT)
            enforcement = await self._enforcer.judge(conn, event, room, now)
            return Decision(kind=room.kind, enforcement=enforcement)
        room = self.managed_room(owner)
        if room is None:
            return Decision(removed=True)
        context = room.context
        assert context is not None, "a transaction's or a dispute's"
        if stored.event_type == RECEIPT_EVENT_TYPE:
            unread = await unread_count(conn, room_id, stored.sender, stored.origin_server_ts)
            notification = read_notification(
                context, stored.sender, event["event_id"], stored.origin_server_ts, unread
            )
            notifications = [notification] if notification else []
            return Decision(notifications, None, context.kind, NOTHING, room, unread=unread)
        return await self.decide_event(conn, room_id, event, room, history, now)

    def managed_room(self, owner: Owner) -> Room | None:
        """The room of a transaction or a dispute (None: removed for retention)."""
        transaction, dispute = owner
        if (dispute or transaction).purged_at is not None:
            return None
        context = room_context(transaction, self._bot, self._admins, dispute, self._links)
        return Room(context.kind, transaction, dispute, context)

    async def decide_event(
        self,
        conn: Connection,
        room_id: RoomId,
        event: Any,
        room: Room,
        history: History | None,
        now: int,
    ) -> Decision:
        """A room event of a transaction's or a dispute's room (not a read)."""
        context = room.context
        assert context is not None, "a transaction's or a dispute's"
        enforcement = await self._enforcer.judge(conn, event, room, now, history)
        related = related_event_id(event)
        related_sender = await sender_of(conn, room_id, related) if related else None
        try:
            notifications, message = message_notifications(
                event, context, related_sender, self._enforcer.mask
            )
        except Exception:  # a field nothing here can read: the event is malformed, not a pass
            self._log.exception("Could not read event %s of %s", event.get("event_id"), room_id)
            notifications, message = [], None
            if not enforcement.broken_rules:
                enforcement = self._enforcer.malformed(event, room, now)
        if enforcement.withhold:  # removed as a violation: it never counts as a message
            notifications = [n for n in notifications if n.type not in WITHHELD]
            message = None
        return Decision(notifications, message, context.kind, enforcement, room, event=event)

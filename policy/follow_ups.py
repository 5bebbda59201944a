"""Follow-ups of a waiting message: unread reminders, nudges and escalations (docs/deals.md).

    a person's message -> the other parties' unread reminders (one per burst: a read or a
                          reply ends it) -> in a transaction room, an exchange waiting for the
                          other party's first reply; the seller's nudge and escalation hang
                          on the buyer's message that started it
    due                -> `decide_*` say, from the room as it is then, whether to fire

Only people's messages count: never the bot's, nor notices (``m.notice``, what automatic
replies send), nor edits. Notification ids are derived from the follow-up, so firing twice
queues one webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .ids import EventId, UserId
from .notifications import Notification, Participant, RoomContext, notification_id
from .states import Access, TransactionState

PARTY_ROLES = ("buyer", "seller")


class FollowUpKind(StrEnum):
    UNREAD_REMINDER = "unread_reminder"  # for: the party with unread messages
    NUDGE = "nudge"  # for: the seller who has not answered
    ESCALATION = "escalation"  # for: the same seller, later


@dataclass(frozen=True, slots=True)
class Delays:
    """The settings, in milliseconds; None: that step is off."""

    unread_ms: int | None = None
    repeat_ms: int | None = None
    nudge_ms: int | None = None
    escalate_ms: int | None = None
    auto_dispute: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: FollowUpKind
    user_id: UserId
    due_at: int


def counts_as_message(event: dict[str, Any], bot: str) -> bool:
    """A person's own new message: not the bot's, not a notice, not an edit, not state."""
    content = event.get("content")
    if event.get("type") != "m.room.message" or "state_key" in event:
        return False
    if event.get("sender") == bot or not isinstance(content, dict):
        return False
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        return False
    return content.get("msgtype") != "m.notice"


def reminders_for(
    context: RoomContext, access: Access, sender: UserId, ts: int, delays: Delays
) -> list[Schedule]:
    """Each other party's unread reminder for a message (kept if one is already pending)."""
    if delays.unread_ms is None or access is Access.ARCHIVED:
        return []
    return [
        Schedule(FollowUpKind.UNREAD_REMINDER, p.matrix_id, ts + delays.unread_ms)
        for p in context.participants
        if p.role in PARTY_ROLES and p.matrix_id != sender and p.user_id is not None
    ]


def seller_follow_ups(
    responder: Participant, access: Access, ts: int, delays: Delays
) -> list[Schedule]:
    """The nudge and escalation of a buyer's message that starts waiting for the seller."""
    if responder.role != "seller" or access is not Access.OPEN:
        return []
    return [
        Schedule(kind, responder.matrix_id, ts + delay)
        for kind, delay in (
            (FollowUpKind.NUDGE, delays.nudge_ms),
            (FollowUpKind.ESCALATION, delays.escalate_ms),
        )
        if delay is not None
    ]


def seller_still_waited_for(state: TransactionState, access: Access, answered: bool) -> bool:
    """Whether a nudge or escalation still applies when it comes due."""
    return state is TransactionState.PAID and access is Access.OPEN and not answered


def iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Waiting:
    """The unread messages of a reminder, as the chat list keeps them (previews masked)."""

    count: int
    first_at: int
    latest_event_id: EventId
    latest_sender: UserId
    latest_preview: str
    latest_at: int


def unread_reminder(
    context: RoomContext,
    reader: Participant,
    waiting: Waiting,
    started: EventId,
    fired: int,
    now: int,
) -> Notification:
    """message.unread_reminder: ``fired`` reminders of this burst went out before this one."""
    sender = context.participant(waiting.latest_sender) or Participant(
        None, waiting.latest_sender, "other"
    )
    data = {
        **context.about(),
        "recipient": reader.as_json(),
        "unread": waiting.count,
        "waiting_since": iso(waiting.first_at),
        "latest": {
            "event_id": waiting.latest_event_id,
            "sender": sender.as_json(),
            "preview": waiting.latest_preview,
            "sent_at": iso(waiting.latest_at),
        },
        "reminder": fired + 1,
    }
    key = f"{context.room_id}\x00{reader.matrix_id}\x00{started}\x00{fired}"
    return Notification("message.unread_reminder", notification_id("reminder", key), now, data)


def deal_notification(
    type_: str,
    context: RoomContext,
    event_id: EventId,
    started_at: int,
    now: int,
    **extra: Any,
) -> Notification:
    """deal.nudge or deal.escalation_due about the buyer's message ``event_id``."""
    parties = {p.role: p.as_json() for p in context.participants if p.role in PARTY_ROLES}
    data = {
        **context.about(),
        **parties,
        "event_id": event_id,
        "waiting_since": iso(started_at),
        "waited_seconds": (now - started_at) // 1000,
        **extra,
    }
    key = f"{context.room_id}\x00{event_id}"
    return Notification(type_, notification_id(type_, key), now, data)

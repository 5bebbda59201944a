"""Marketplace notifications: what a room event means for the marketplace.

    stored event + room context -> [Notification]   (nothing for the bot's own events,
                                                      reactions, state or unknown rooms)

Ids are derived from what caused the notification, so processing an event twice yields the
same ids and the outbox keeps one row (at-least-once delivery with a stable id).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .ids import DisputeId, EventId, MarketUserId, RoomId, TransactionId, UserId
from .messages import MEDIA_MSGTYPES, strip_reply_fallback
from .rooms import RoomKind

PREVIEW_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: MarketUserId | None  # None for admins
    matrix_id: UserId
    role: str  # buyer, seller or admin

    def as_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "matrix_id": self.matrix_id, "role": self.role}


@dataclass(frozen=True, slots=True)
class RoomContext:
    room_id: RoomId
    kind: RoomKind  # transaction or dispute
    transaction_id: TransactionId
    participants: tuple[Participant, ...]
    bot: UserId
    dispute_id: DisputeId | None = None
    links: Mapping[str, str] = field(default_factory=dict)  # deep links (policy.links)

    def participant(self, matrix_id: str) -> Participant | None:
        return next((p for p in self.participants if p.matrix_id == matrix_id), None)

    def about(self) -> dict[str, Any]:
        about = {
            "room_id": self.room_id,
            "room_kind": self.kind,
            "transaction_id": self.transaction_id,
        }
        if self.dispute_id is not None:
            about["dispute_id"] = self.dispute_id
        if self.links:
            about["links"] = dict(self.links)
        return about


@dataclass(frozen=True, slots=True)
class Notification:
    type: str
    id: str
    occurred_at: int  # ms since the epoch
    data: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)
        return {
            "type": self.type,
            "id": self.id,
            "occurred_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """What the chat list keeps of a message: its preview, or that it is gone."""

    event_id: EventId
    sender: UserId
    ts: int
    preview: str
    edits: EventId | None = None  # the event an edit replaces
    deletes: EventId | None = None  # the event a redaction removes


def notification_id(kind: str, key: str) -> str:
    return "msg_" + hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()[:32]


def preview(text: Any, *, is_reply: bool = False) -> str:
    """One line of at most 200 characters: reply fallback gone, control characters removed."""
    if not isinstance(text, str):
        return ""
    if is_reply:
        text = strip_reply_fallback(text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > PREVIEW_LENGTH:
        text = text[: PREVIEW_LENGTH - 1].rstrip() + "…"
    return text


def related_event_id(event: dict[str, Any]) -> str | None:
    """The event a redaction removes or an edit replaces."""
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    if event.get("type") == "m.room.redaction":
        redacts = content.get("redacts") or event.get("redacts")  # v11 moved it into content
        return redacts if isinstance(redacts, str) else None
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        original = relates.get("event_id")
        return original if isinstance(original, str) else None
    return None


def message_notifications(
    event: dict[str, Any],
    context: RoomContext,
    related_sender: str | None = None,
    mask: Callable[[str], str] = str,
) -> tuple[list[Notification], MessageRecord | None]:
    """The notifications of one room event, and what the chat list should record of it.

    ``related_sender`` is the sender of the event a redaction removes or an edit replaces,
    when it is known. ``mask`` hides the contact details of a preview (the marketplace's own
    e-mails would otherwise forward them).
    """
    sender = event.get("sender", "")
    event_type = event.get("type")
    content = event.get("content") or {}
    ts = event.get("origin_server_ts", 0)
    event_id = event.get("event_id", "")
    related = related_event_id(event)
    if event_type == "m.room.redaction":
        redacts = related
        if redacts is None or related_sender is None:
            return [], None
        if related_sender == context.bot:
            return [], None  # the bot's own notices are not the marketplace's messages
        remover = context.participant(sender)
        data = {
            **context.about(),
            "event_id": redacts,
            "redaction_event_id": event_id,
            "deleted_by": remover.as_json() if remover else {"matrix_id": sender, "role": "bot"},
        }
        record = MessageRecord(event_id, sender, ts, "", deletes=redacts)
        return [Notification("message.deleted", notification_id("deleted", redacts), ts, data)], (
            record
        )
    if event_type != "m.room.message" or sender == context.bot or "state_key" in event:
        return [], None  # state, reactions and the bot's own messages notify nothing
    author = context.participant(sender) or Participant(None, sender, "other")
    relates = content.get("m.relates_to") or {}
    if related is not None:
        if related_sender != sender:
            # Only a message's author can edit it, and only a message of this room: an edit
            # of an event unknown here (another room's, say) says nothing to the marketplace.
            return [], None
        original = related
        new_content = content.get("m.new_content") or {}
        text = mask(preview(new_content.get("body") if isinstance(new_content, dict) else ""))
        data = {
            **context.about(),
            "event_id": event_id,
            "original_event_id": original,
            "sender": author.as_json(),
            "preview": text,
        }
        record = MessageRecord(event_id, sender, ts, text, edits=original)
        return [Notification("message.edited", notification_id("edited", event_id), ts, data)], (
            record
        )
    is_reply = isinstance(relates, dict) and "m.in_reply_to" in relates
    msgtype = _declared(content.get("msgtype"), mask)
    text = mask(preview(content.get("body"), is_reply=is_reply))
    data = {
        **context.about(),
        "event_id": event_id,
        "sender": author.as_json(),
        "recipients": [p.as_json() for p in context.participants if p.matrix_id != sender],
        "msgtype": msgtype,
        "preview": text,
    }
    if msgtype in MEDIA_MSGTYPES:
        info = content.get("info") if isinstance(content.get("info"), dict) else {}
        name = content.get("filename") or content.get("body")
        data["media"] = {
            "mimetype": _declared(info.get("mimetype"), mask),
            "size": info.get("size"),
            "name": mask(preview(name)) if isinstance(name, str) else None,
        }
    record = MessageRecord(event_id, sender, ts, text)
    return [Notification("message.created", notification_id("created", event_id), ts, data)], (
        record
    )


def read_notification(
    context: RoomContext, reader: str, event_id: str, ts: int, unread: int
) -> Notification | None:
    participant = context.participant(reader)
    if participant is None:
        return None
    data = {
        **context.about(),
        "reader": participant.as_json(),
        "event_id": event_id,
        "unread": unread,
    }
    key = f"{context.room_id}\x00{reader}\x00{event_id}"
    return Notification("message.read", notification_id("read", key), ts, data)


def state_notification(
    context: RoomContext, access: str, previous: str, cause: str, occurred_at: int
) -> Notification:
    data = {**context.about(), "access": access, "previous_access": previous, "cause": cause}
    key = f"{context.room_id}\x00{context.transaction_id}\x00{cause}\x00{access}"
    return Notification("room.state_changed", notification_id("state", key), occurred_at, data)


def dispute_notification(
    context: RoomContext, type_: str, details: dict[str, Any], occurred_at: int
) -> Notification:
    """dispute.opened or dispute.resolved, about the transaction room's context."""
    assert context.dispute_id is not None
    data = {**context.about(), **details}
    key = f"{context.dispute_id}\x00{type_}"
    return Notification(type_, notification_id("dispute", key), occurred_at, data)


def user_notification(
    type_: str, user_id: MarketUserId, matrix_id: UserId, reason: str | None, occurred_at: int
) -> Notification:
    """user.suspended, user.unsuspended or user.erased: one per change (its time is its key)."""
    data = {"user_id": user_id, "matrix_id": matrix_id, "reason": reason}
    key = f"{user_id}\x00{type_}\x00{occurred_at}"
    return Notification(type_, notification_id("user", key), occurred_at, data)


def violation_notification(
    context: RoomContext,
    event: dict[str, Any],
    violations: list[dict[str, Any]],
    actions: list[str],
    mask: Callable[[str], str] = str,
) -> Notification:
    """policy.violation: which rules a message broke and what the bot does about it.

    ``violations`` are ``{"rule", "reason", "findings"}``; the message's content is not
    repeated (it may be the very contact details the rule keeps off the marketplace).
    """
    sender = event.get("sender", "")
    author = context.participant(sender) or Participant(None, sender, "other")
    event_id = event.get("event_id", "")
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    data = {
        **context.about(),
        "event_id": event_id,
        "sender": author.as_json(),
        "msgtype": _declared(content.get("msgtype"), mask),
        "violations": violations,
        "actions": actions,
    }
    ts = event.get("origin_server_ts", 0)
    return Notification("policy.violation", notification_id("violation", event_id), ts, data)


def _declared(value: Any, mask: Callable[[str], str]) -> str | None:
    """A type the sender declared (msgtype, mimetype): free text they chose, so masked too."""
    return mask(value[:255]) if isinstance(value, str) else None

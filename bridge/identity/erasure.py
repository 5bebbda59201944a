"""What an erased user wrote, removed from the bridge's own tables (GDPR erasure).

The inbox keeps every room event as it arrived (transcripts are built from it):

- the user's events become tombstones that keep only their place in the room (id, type,
  sender, time, a top-level ``org.marketplace.erased`` key that no client can set), so a
  transcript made afterwards still has a complete hash chain, with ``erased`` entries where
  they wrote;
- membership events about the user (theirs, and the bot's invitations and removals) keep the
  membership alone: no display name, avatar or reason, no previous content;
- other people's replies to them lose the fallback that quotes them (``reply_to`` still says
  which message they answered).

The originals of their masked messages and the chat list's previews of their messages go too.
The audit trail stays: it records what the bot and admins did, which the marketplace must
still be able to prove.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mautrix.util.async_db import Connection

from policy.ids import EventId, RoomId, UserId
from policy.messages import replies, strip_reply_fallback
from policy.transcript import ERASED_KEY

_KEPT = ("event_id", "type", "sender", "origin_server_ts", "room_id")
_HTML_FALLBACK = re.compile(r"^\s*<mx-reply>.*?</mx-reply>", re.DOTALL)


async def sent_by(conn: Connection, room_id: RoomId, sender: UserId) -> list[EventId]:
    """What the sender put in the room that a redaction removes: every event but state."""
    rows = await conn.fetch(
        "SELECT event_id, event_json FROM inbox_events WHERE room_id = $1 AND sender = $2"
        " AND event_type != 'm.room.redaction' ORDER BY seq",
        room_id,
        sender,
    )
    return [row["event_id"] for row in rows if "state_key" not in json.loads(row["event_json"])]


def _membership_only(event: dict[str, Any]) -> dict[str, Any]:
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    membership = content.get("membership")
    kept = {key: event[key] for key in (*_KEPT, "state_key") if key in event}
    return {**kept, "content": {"membership": membership} if membership else {}}


def tombstone(event: dict[str, Any]) -> dict[str, Any]:
    if "state_key" in event:  # their membership: who they were in the room, nothing more
        return _membership_only(event)
    return {**{key: event[key] for key in _KEPT if key in event}, ERASED_KEY: True}


def _unquoted(event: dict[str, Any]) -> dict[str, Any]:
    content = dict(event.get("content") or {})
    if isinstance(content.get("body"), str):
        content["body"] = strip_reply_fallback(content["body"])
    if isinstance(content.get("formatted_body"), str):
        content["formatted_body"] = _HTML_FALLBACK.sub("", content["formatted_body"])
    return {**event, "content": content}


async def erase_in_room(conn: Connection, room_id: RoomId, user: UserId) -> int:
    """Remove what ``user`` wrote from the room's stored events; how many events changed."""
    rows = await conn.fetch(
        "SELECT seq, sender, event_json FROM inbox_events WHERE room_id = $1 ORDER BY seq",
        room_id,
    )
    theirs: set[str] = set()
    changed = 0
    for row in rows:
        event = json.loads(row["event_json"])
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        reply = (content.get("m.relates_to") or {}).get("m.in_reply_to") or {}
        if row["sender"] == user:
            theirs.add(event.get("event_id"))
            new = tombstone(event)
        elif event.get("type") == "m.room.member" and event.get("state_key") == user:
            new = _membership_only(event)
        elif replies(content) and reply.get("event_id") in theirs:
            new = _unquoted(event)
        else:
            continue
        erased = json.dumps(new, separators=(",", ":"), ensure_ascii=False)
        await conn.execute(
            "UPDATE inbox_events SET event_json = $2 WHERE seq = $1", row["seq"], erased
        )
        changed += 1
    await conn.execute(
        "DELETE FROM masked_originals WHERE room_id = $1 AND sender = $2", room_id, user
    )
    await conn.execute(
        "UPDATE messages SET preview = '' WHERE room_id = $1 AND sender = $2", room_id, user
    )
    return changed

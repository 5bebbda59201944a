"""What an erased user wrote, removed from the bridge's own tables (GDPR erasure).

The inbox keeps every room event as it arrived (transcripts are built from it): the user's
events become tombstones that keep only their place in the room (id, type, sender, time, a
top-level ``org.marketplace.erased`` key that no client can set), so a transcript made
afterwards still has a complete hash chain, with ``erased`` entries where they wrote. Their
membership events keep the membership alone (no display name). The originals of their masked
messages and the chat list's previews of their messages go too. The audit trail stays: it
records what the bot and admins did, which the marketplace must still be able to prove.
"""

from __future__ import annotations

import json

from mautrix.util.async_db import Connection

from policy.ids import EventId, RoomId, UserId
from policy.transcript import ERASED_KEY

_KEPT = ("event_id", "type", "sender", "origin_server_ts", "room_id")


async def messages_of(conn: Connection, room_id: RoomId, sender: UserId) -> list[EventId]:
    """The sender's messages in the room, as the inbox received them."""
    rows = await conn.fetch(
        "SELECT event_id FROM inbox_events WHERE room_id = $1 AND sender = $2"
        " AND event_type = 'm.room.message' ORDER BY seq",
        room_id,
        sender,
    )
    return [row["event_id"] for row in rows]


def tombstone(event: dict) -> dict:
    if "state_key" in event:  # their membership: who they were in the room, nothing they wrote
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        membership = content.get("membership")
        return {**event, "content": {"membership": membership} if membership else {}}
    return {**{key: event[key] for key in _KEPT if key in event}, ERASED_KEY: True}


async def erase_in_room(conn: Connection, room_id: RoomId, sender: UserId) -> int:
    """Replace what ``sender`` wrote in the room with tombstones; how many events changed."""
    rows = await conn.fetch(
        "SELECT seq, event_json FROM inbox_events WHERE room_id = $1 AND sender = $2",
        room_id,
        sender,
    )
    for row in rows:
        event = json.loads(row["event_json"])
        erased = json.dumps(tombstone(event), separators=(",", ":"), ensure_ascii=False)
        await conn.execute(
            "UPDATE inbox_events SET event_json = $2 WHERE seq = $1", row["seq"], erased
        )
    await conn.execute(
        "DELETE FROM masked_originals WHERE room_id = $1 AND sender = $2", room_id, sender
    )
    await conn.execute(
        "UPDATE messages SET preview = '' WHERE room_id = $1 AND sender = $2", room_id, sender
    )
    return len(rows)

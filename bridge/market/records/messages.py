"""The chat list's tables: each room's messages (their previews, deleted or not) and how far
each user has read (read_positions, written by the homeserver's intake)."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Connection

from bridge.storage.writes import Writes
from policy.ids import RoomId, UserId
from policy.notifications import MessageRecord


@dataclass(frozen=True, slots=True)
class ChatSummary:
    last_message: str | None
    last_message_at: int | None
    last_sender: UserId | None
    unread: int


async def record_message(
    conn: Connection | Writes, room_id: RoomId, record: MessageRecord
) -> None:
    """Keep a new message's preview, an edit's new preview, or that a message was deleted."""
    if record.deletes is not None:
        await conn.execute(
            "UPDATE messages SET deleted = TRUE, preview = ''"
            " WHERE room_id = $1 AND event_id = $2",
            room_id,
            record.deletes,
        )
    elif record.edits is not None:
        await conn.execute(
            "UPDATE messages SET preview = $3 WHERE room_id = $1 AND event_id = $2",
            room_id,
            record.edits,
            record.preview,
        )
    else:
        await conn.execute(
            "INSERT INTO messages (room_id, event_id, sender, ts, preview)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            room_id,
            record.event_id,
            record.sender,
            record.ts,
            record.preview,
        )


async def unread_count(conn: Connection, room_id: RoomId, reader: UserId, read_ts: int) -> int:
    """Messages from others after the reader's read position (deleted ones do not count)."""
    return await conn.fetchval(
        "SELECT COUNT(*) FROM messages WHERE room_id = $1 AND sender <> $2 AND NOT deleted"
        " AND ts > $3",
        room_id,
        reader,
        read_ts,
    )

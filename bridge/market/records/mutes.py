"""The mutes table: who is muted in which room until when (room plans give them level -1)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from bridge.storage.database import rows_affected
from bridge.storage.writes import Writes
from policy.ids import RoomId, UserId


async def add_mute(
    conn: Connection | Writes, room_id: RoomId, user_id: UserId, until: int
) -> None:
    """Mute until ``until`` (ms), or longer if a mute already lasts longer."""
    await conn.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)"
        " ON CONFLICT (room_id, user_id) DO UPDATE SET until = excluded.until"
        " WHERE excluded.until > mutes.until",
        room_id,
        user_id,
        until,
    )


class Mutes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def muted(self, room_id: RoomId, now: int) -> tuple[UserId, ...]:
        """Who is muted in the room at ``now``."""
        rows = await self._db.fetch(
            "SELECT user_id FROM mutes WHERE room_id = $1 AND until > $2 ORDER BY user_id",
            room_id,
            now,
        )
        return tuple(row["user_id"] for row in rows)

    async def lift(self, room_id: RoomId, user_id: UserId, now: int) -> bool:
        """End a mute that has run out; False when there is none (or it was extended)."""
        status = await self._db.execute(
            "DELETE FROM mutes WHERE room_id = $1 AND user_id = $2 AND until <= $3",
            room_id,
            user_id,
            now,
        )
        return rows_affected(status) > 0

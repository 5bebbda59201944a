"""The bot_actions table: what the bot did in Matrix, keyed by intent, so a retry or a restart
never does it twice (a notice posted once, say)."""

from __future__ import annotations

from mautrix.util.async_db import Database

from bridge.runtime.clock import Clock
from policy.ids import EventId, RoomId


class BotActions:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def done(self, room_id: RoomId) -> set[str]:
        """The keys of the actions the bot has completed in a room."""
        rows = await self._db.fetch(
            "SELECT action_key FROM bot_actions WHERE room_id = $1 AND event_id IS NOT NULL",
            room_id,
        )
        return {row["action_key"] for row in rows}

    async def record(self, key: str, room_id: RoomId, event_id: EventId) -> None:
        await self._db.execute(
            "INSERT INTO bot_actions (action_key, room_id, event_id, created_at, done_at)"
            " VALUES ($1, $2, $3, $4, $4)"
            " ON CONFLICT (action_key) DO UPDATE SET event_id = excluded.event_id,"
            " done_at = excluded.done_at",
            key,
            room_id,
            event_id,
            self._clock.now_ms(),
        )

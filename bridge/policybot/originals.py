"""The masked_originals table: what a party wrote before the homeserver masked its contact
details, fetched from the Synapse module by the bot (a planned keep_original action) and kept
for admins only: transcripts show it beside the masked message, the audit trail names it."""

from __future__ import annotations

import json
from typing import Any

from mautrix.util.async_db import Database

from policy.ids import EventId, RoomId, UserId


class MaskedOriginals:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(
        self, event_id: EventId, room_id: RoomId, sender: UserId, content: Any, now: int
    ) -> None:
        await self._db.execute(
            "INSERT INTO masked_originals (event_id, room_id, sender, content, created_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            event_id,
            room_id,
            sender,
            json.dumps(content, ensure_ascii=True),
            now,
        )

    async def of_room(self, room_id: RoomId) -> dict[EventId, Any]:
        """Each masked message's original content, by the masked event's id."""
        rows = await self._db.fetch(
            "SELECT event_id, content FROM masked_originals WHERE room_id = $1", room_id
        )
        return {row["event_id"]: json.loads(row["content"]) for row in rows}

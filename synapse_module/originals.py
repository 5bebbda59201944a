"""Originals of masked messages, kept in Synapse's own database for the bridge's bot alone.

    the module masks a message -> keep(mask id, room, sender, original content)
    the bridge sees the masked message's mask id -> GET /_synapse/client/marketplace/masked
        ?id=<mask id> as the bot -> {"room_id", "sender", "content"} -> its audit trail

The mask id, not the event id, is the key: the masked event's id is only known once Synapse
has built it from the module's replacement.
"""

from __future__ import annotations

import json
import time
from typing import Any

from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

MASKED_PATH = "/_synapse/client/marketplace/masked"
_TABLE = """
    CREATE TABLE IF NOT EXISTS marketplace_masked_originals (
        mask_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        sender  TEXT NOT NULL,
        content TEXT NOT NULL,
        ts      BIGINT NOT NULL
    )
"""


class Originals:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._table_made = False

    async def _ensure_table(self) -> None:
        if not self._table_made:
            await self._api.run_db_interaction(
                "marketplace_originals_table", lambda txn: txn.execute(_TABLE)
            )
            self._table_made = True

    async def forget(self, sender: str) -> None:
        """Every original kept of the sender's messages (their account is being erased)."""
        await self._ensure_table()
        await self._api.run_db_interaction(
            "marketplace_forget_originals",
            lambda txn: txn.execute(
                "DELETE FROM marketplace_masked_originals WHERE sender = ?", (sender,)
            ),
        )

    async def forget_room(self, room_id: str) -> None:
        """Every original kept of messages in the room (the room is being purged)."""
        await self._ensure_table()
        await self._api.run_db_interaction(
            "marketplace_forget_room_originals",
            lambda txn: txn.execute(
                "DELETE FROM marketplace_masked_originals WHERE room_id = ?", (room_id,)
            ),
        )

    async def keep(self, mask_id: str, room_id: str, sender: str, content: Any) -> None:
        await self._ensure_table()
        row = (mask_id, room_id, sender, json.dumps(content), int(time.time() * 1000))

        def insert(txn: Any) -> None:
            txn.execute(
                "INSERT INTO marketplace_masked_originals (mask_id, room_id, sender, content, ts)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )

        await self._api.run_db_interaction("marketplace_keep_original", insert)

    async def find(self, mask_id: str) -> dict[str, Any] | None:
        await self._ensure_table()

        def select(txn: Any) -> Any:
            txn.execute(
                "SELECT room_id, sender, content FROM marketplace_masked_originals"
                " WHERE mask_id = ?",
                (mask_id,),
            )
            return txn.fetchone()

        row = await self._api.run_db_interaction("marketplace_find_original", select)
        if row is None:
            return None
        return {"room_id": row[0], "sender": row[1], "content": json.loads(row[2])}


class OriginalsResource(DirectServeJsonResource):
    """``GET ...?id=<mask id>``, answered to the bot alone."""

    def __init__(self, api: ModuleApi, originals: Originals, bot: str) -> None:
        super().__init__()
        self._api = api
        self._originals = originals
        self._bot = bot

    async def _async_render_GET(self, request: Any) -> tuple[int, dict[str, Any]]:
        requester = await self._api.get_user_by_req(request)
        if requester.user.to_string() != self._bot:
            raise SynapseError(403, "Only the marketplace's bot may ask", Codes.FORBIDDEN)
        mask_id = (request.args.get(b"id") or [b""])[0].decode("utf-8", "replace")
        found = await self._originals.find(mask_id)
        if found is None:
            raise SynapseError(404, "No such masked message", Codes.NOT_FOUND)
        return 200, found

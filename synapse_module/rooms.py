"""Rooms removed from the homeserver for good, for the bridge's bot alone.

    POST /_synapse/client/marketplace/rooms/purge  {"room_id"}
         -> {"room_id", "purged": true, "kicked_users": [...]}

A room the bot created: every local member made to leave it (the bot too), the room blocked so
nobody joins it again, its history purged from Synapse's database, and the originals this
module kept of its masked messages deleted. A room the homeserver no longer knows (purged by
an earlier call: the bridge retries after a crash) is blocked again and answered alike, with
nobody kicked; a room anyone else created is refused (403) and left as it is.

Synchronous, as Synapse's admin API v1 ``DELETE /_synapse/admin/v1/rooms/<room_id>`` is:
`RoomShutdownHandler.shutdown_room` with the parameters its admin API v2 builds (no new room,
block, purge, force), then `PaginationHandler.purge_room(force=True)`. The module API offers
neither, so they are called through the homeserver, as accounts.py does for its handlers.
Each member's leave is the member's own (Synapse's shutdown acts as them), which this module's
callbacks let through: the spam checker passes state events, and `check_event_allowed` only
strips a party's own membership of extra keys (tests/e2e/test_room_purge.py checks that every
member is kicked). A call cut short (Synapse stopped between the steps) is finished by the
next: the room is still known and still the bot's, and every step is safe to repeat.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi, RoomID
from synapse.module_api.errors import Codes, SynapseError

from .accounts import _BotOnly
from .originals import Originals

PURGE_PATH = "/_synapse/client/marketplace/rooms/purge"

log = logging.getLogger("synapse_module.rooms")


class RoomPurgeResource(_BotOnly):
    def __init__(self, api: ModuleApi, bot: str, originals: Originals) -> None:
        super().__init__(api, bot, prefix="")  # names rooms, never accounts: no prefix
        self._originals = originals

    async def _async_render_POST(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        room_id = self._body(request).get("room_id")
        if not (isinstance(room_id, str) and RoomID.is_valid(room_id)):
            raise SynapseError(400, "room_id: a room ID", Codes.INVALID_PARAM)
        if await self._api._store.get_room(room_id) is not None:
            creator = await self._creator(room_id)
            if creator != self._bot:
                raise SynapseError(
                    403, "Only a room the marketplace's bot created may be purged", Codes.FORBIDDEN
                )
        hs = self._api._hs
        result = await hs.get_room_shutdown_handler().shutdown_room(
            room_id,
            {
                "requester_user_id": self._bot,  # recorded as the one who blocked it
                "new_room_user_id": None,  # members leave; no room to move them to
                "new_room_name": None,
                "message": None,
                "block": True,
                "purge": True,
                "force_purge": True,
            },
        )
        kicked = list(result["kicked_users"]) if result else []
        if result and result["failed_to_kick_users"]:
            log.warning("Purging %s: could not kick %s", room_id, result["failed_to_kick_users"])
        await hs.get_pagination_handler().purge_room(room_id, force=True)
        await self._originals.forget_room(room_id)
        log.info("Purged %s; kicked %s", room_id, kicked)
        return 200, {"room_id": room_id, "purged": True, "kicked_users": kicked}

    async def _creator(self, room_id: str) -> str | None:
        """Who created the room: its ``m.room.create`` event's sender (what makes a room
        managed, policy.lockdown.is_managed_room), else the creator Synapse recorded."""
        state = await self._api.get_room_state(room_id, [("m.room.create", "")])
        create = state.get(("m.room.create", ""))
        if create is not None:
            return create.sender
        stats = await self._api._store.get_room_with_stats(room_id)
        return stats.creator if stats is not None else None

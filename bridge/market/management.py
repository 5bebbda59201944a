"""The management room: where the admins are told what happened and give commands.

Configured (`rooms.management_room`), or made once by the bot and remembered. The room keeper
keeps its members (the admins and the bot); its state is left alone, as the operator may own
the room.
"""

from __future__ import annotations

from html import escape

from policy.ids import RoomId, UserId
from policy.membership import allowed_members
from policy.notices import Notice
from policy.rooms import Participants, RoomKind, plan_room
from policy.states import Access

from .keeper import RoomKeeper
from .records.settings import Settings
from .rooms import RoomSpec

SETTING = "management_room"
NAME = "Marketplace moderation"


class ManagementRoom:
    """The room as the bridge uses it, and as the room keeper keeps it (`ManagedRoom`)."""

    def __init__(
        self,
        keeper: RoomKeeper,
        settings: Settings,
        bot: UserId,
        admins: tuple[UserId, ...],
        configured: RoomId | None,
        room_version: str,
    ) -> None:
        self._keeper = keeper
        self._settings = settings
        self._participants = Participants(bot=bot, parties=(), admins=admins)
        self._configured = configured
        self._room_version = room_version
        self.room_id: RoomId | None = None  # known once `load` or `ensure` has run

    async def load(self) -> None:
        """Know the room made on an earlier run (or configured) without asking the homeserver,
        so the events the homeserver re-sends at start are judged as the room's."""
        stored = self._configured or await self._settings.get(SETTING)
        self.room_id = RoomId(stored) if stored else None

    async def ensure(self) -> RoomId | None:
        """The room, made if there is none yet and there are admins to be in it."""
        if self._configured is None and not self._participants.admins:
            if await self._settings.get(SETTING) is None:
                return None
        spec = await self._keeper.ensure(self, check_members=True)
        self.room_id = spec.room_id
        return self.room_id

    async def repair(self) -> None:
        if self.room_id is not None:
            await self._keeper.ensure(self, check_members=True)

    async def announce(self, key: str, text: str) -> None:
        """Tell the admins (once per key); quiet when there is no such room."""
        if self.room_id is not None:
            notice = Notice(text, escape(text))
            await self._keeper.post_once(self.room_id, (f"announce:{key}", notice))

    async def spec(self) -> RoomSpec:
        room_id = self._configured or await self._settings.get(SETTING)
        plan = plan_room(
            RoomKind.MANAGEMENT, Access.OPEN, self._participants, self._room_version, NAME
        )
        return RoomSpec(
            RoomKind.MANAGEMENT,
            "room",
            "the moderation room",
            RoomId(room_id) if room_id else None,
            self._room_version,
            plan,
            allowed_members(RoomKind.MANAGEMENT, self._participants),
            holds_state=False,
        )

    async def remember(self, room_id: RoomId) -> None:
        await self._settings.set(SETTING, room_id)

"""A marketplace user's chat list: their transaction and dispute rooms, newest first, each with
its last message and unread count."""

from __future__ import annotations

from mautrix.util.async_db import Database

from policy.ids import MarketUserId, UserId

from .records.chats import Chat, chats_of


class ChatList:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_matrix_id(self, matrix_id: UserId) -> tuple[MarketUserId, list[Chat]] | None:
        """The chats of the marketplace user bound to this Matrix ID, each with the other
        party's (the web chat shows it); None if there is none."""
        found = await chats_of(self._db, matrix_id=matrix_id, counterpart=True)
        return None if found is None else (found[0], _ordered(found[1]))

    async def of(self, user_id: MarketUserId) -> list[Chat] | None:
        """The user's chats; None when the marketplace never named this user."""
        found = await chats_of(self._db, user_id=user_id)
        return None if found is None else _ordered(found[1])


def _ordered(chats: list[Chat]) -> list[Chat]:
    """Newest first (a dispute by its own creation), then by id."""
    chats.sort(key=lambda chat: (-chat.created_at, chat.key))
    return chats

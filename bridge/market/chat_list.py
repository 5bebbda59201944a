"""A marketplace user's chat list: their transaction and dispute rooms, newest first, each with
its last message and unread count."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from policy.ids import MarketUserId, UserId

from .models import DisputeRecord, TransactionRecord
from .records.chats import ChatRow, chats_of
from .records.messages import ChatSummary


@dataclass(frozen=True, slots=True)
class Chat:
    """One room in a user's chat list: a transaction's, or one of its disputes'."""

    transaction: TransactionRecord
    dispute: DisputeRecord | None
    summary: ChatSummary

    @property
    def created_at(self) -> int:
        return self.dispute.created_at if self.dispute else self.transaction.created_at

    @property
    def key(self) -> str:
        return self.dispute.dispute_id if self.dispute else self.transaction.transaction_id


class ChatList:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_matrix_id(self, matrix_id: UserId) -> tuple[MarketUserId, list[Chat]] | None:
        """The chats of the marketplace user bound to this Matrix ID; None if there is none."""
        found = await chats_of(self._db, matrix_id=matrix_id)
        return None if found is None else (found[0], _ordered(found[1]))

    async def of(self, user_id: MarketUserId) -> list[Chat] | None:
        """The user's chats; None when the marketplace never named this user."""
        found = await chats_of(self._db, user_id=user_id)
        return None if found is None else _ordered(found[1])


def _ordered(rows: list[ChatRow]) -> list[Chat]:
    """Newest first (a dispute by its own creation), then by id."""
    chats = [Chat(row.transaction, row.dispute, row.summary) for row in rows]
    chats.sort(key=lambda chat: (-chat.created_at, chat.key))
    return chats

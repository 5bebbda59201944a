"""A marketplace user's chat list: their transaction and dispute rooms, newest first, each with
its last message and unread count."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from policy.ids import MarketUserId, UserId

from .models import DisputeRecord, TransactionRecord
from .records.disputes import disputes_of
from .records.messages import ChatSummary, chat_summary
from .records.transactions import TransactionRecords
from .records.users import market_user_of, matrix_id_of


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
    def __init__(self, db: Database, transactions: TransactionRecords) -> None:
        self._db = db
        self._transactions = transactions

    async def of_matrix_id(self, matrix_id: UserId) -> tuple[MarketUserId, list[Chat]] | None:
        """The chats of the marketplace user bound to this Matrix ID; None if there is none."""
        user_id = await market_user_of(self._db, matrix_id)
        if user_id is None:
            return None
        return user_id, await self.of(user_id) or []

    async def of(self, user_id: MarketUserId) -> list[Chat] | None:
        """The user's chats; None when the marketplace never named this user."""
        matrix_id = await matrix_id_of(self._db, user_id)
        if matrix_id is None:
            return None
        chats = []
        records = await self._transactions.of_party(user_id)
        async with self._db.acquire() as conn:
            for record in records:
                summary = await chat_summary(conn, record.room_id, matrix_id)
                chats.append(Chat(record, None, summary))
                for dispute in await disputes_of(conn, record.transaction_id):
                    summary = await chat_summary(conn, dispute.room_id, matrix_id)
                    chats.append(Chat(record, dispute, summary))
        chats.sort(key=lambda chat: (-chat.created_at, chat.key))
        return chats

"""A user's chats in one query: their transactions (as buyer or seller) and the disputes of
those, each with its room's last message and the user's unread count.

One round trip whatever the user's room count (it made about four per room, one after
another). Every lookup is an index probe: the user by its key, their transactions in one
scan of both transactions_by_buyer and _by_seller, each read once (a dispute's chat carries
its transaction's row and its own, rather than finding them again by key), disputes by
transaction, the parties by their key, the latest message and the unread ones by
(room_id, ts) (messages_by_time), the read position by its key.

The latest message: PostgreSQL reads it in one probe (a LATERAL subquery); SQLite, which has
no LATERAL, finds its key, then the row by that key. On PostgreSQL at a million transactions
the second probe was most often a page from outside its shared buffers: one probe took the
query's execution time down by about a fifth (docs/performance.md, sixth round).
"""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database, Scheme

from policy.ids import MarketUserId, UserId

from ..models import DisputeRecord, TransactionRecord
from .disputes import DISPUTE_FIELDS, dispute_of
from .messages import ChatSummary
from .transactions import COLUMNS, transaction_of

# {key}: which of the user's ids the call names. A user without chats is one row of NULLs
# (hence transactions.JOINS left-joined here), an unknown user none. `t` is a chat: its
# transaction's row, its room (`chat_room`: the dispute's, else the transaction's) and, for a
# dispute's, the dispute's columns (x_*; NULL for a transaction's chat).
_CHATS = """
WITH me AS (SELECT user_id, matrix_id FROM marketplace_users WHERE {key} = $1),
mine AS (
    SELECT t.* FROM me JOIN transactions t
    ON t.buyer_id = me.user_id OR t.seller_id = me.user_id
),
chats AS (
    SELECT mine.*, mine.room_id AS chat_room, {no_dispute} FROM mine
    UNION ALL
    SELECT mine.*, x.room_id, {dispute}
    FROM mine JOIN disputes x ON x.transaction_id = mine.transaction_id
)
SELECT me.user_id AS me_user_id, me.matrix_id AS me_matrix_id, t.x_dispute_id AS chat_dispute,
       {columns}, {dispute_columns},
       m.preview AS last_preview, m.ts AS last_ts, m.sender AS last_sender,
       (SELECT COUNT(*) FROM messages u
        WHERE u.room_id = t.chat_room AND u.sender <> me.matrix_id AND NOT u.deleted
          AND u.ts > COALESCE((SELECT r.ts FROM read_positions r
                               WHERE r.room_id = t.chat_room AND r.user_id = me.matrix_id), 0)
       ) AS unread
FROM me
LEFT JOIN chats t ON 1 = 1
LEFT JOIN marketplace_users b ON b.user_id = t.buyer_id
LEFT JOIN marketplace_users s ON s.user_id = t.seller_id
LEFT JOIN disputes d ON d.transaction_id = t.transaction_id AND d.state = 'open'
{latest}
"""
# The latest message: PostgreSQL's join, then SQLite's (see above).
_LATEST_POSTGRES = """LEFT JOIN LATERAL (
    SELECT l.preview, l.ts, l.sender FROM messages l
    WHERE l.room_id = t.chat_room AND NOT l.deleted ORDER BY l.ts DESC LIMIT 1) m ON TRUE"""
_LATEST_SQLITE = """LEFT JOIN messages m ON m.room_id = t.chat_room AND m.event_id = (
    SELECT l.event_id FROM messages l WHERE l.room_id = t.chat_room AND NOT l.deleted
    ORDER BY l.ts DESC LIMIT 1)"""


def _query(key: str, latest: str) -> str:
    return _CHATS.format(
        key=key,
        latest=latest,
        columns=COLUMNS,
        no_dispute=", ".join(f"NULL AS x_{name}" for name in DISPUTE_FIELDS),
        dispute=", ".join(f"x.{name}" for name in DISPUTE_FIELDS),
        dispute_columns=", ".join(f"t.x_{name}" for name in DISPUTE_FIELDS),
    )


# (on SQLite?, which id the call names) -> the query
_QUERIES = {
    (sqlite, key): _query(key, _LATEST_SQLITE if sqlite else _LATEST_POSTGRES)
    for sqlite in (False, True)
    for key in ("user_id", "matrix_id")
}


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


async def chats_of(
    db: Database, *, user_id: MarketUserId | None = None, matrix_id: UserId | None = None
) -> tuple[MarketUserId, list[Chat]] | None:
    """The user (named by either id) and their chats, unordered (rooms removed for retention
    left out); None for an unknown user."""
    key, value = ("user_id", user_id) if user_id is not None else ("matrix_id", matrix_id)
    rows = await db.fetch(_QUERIES[db.scheme == Scheme.SQLITE, key], value)
    if not rows:
        return None
    chats = []
    for row in rows:
        if row["transaction_id"] is None:  # the user has no chats
            continue
        dispute = None
        if row["chat_dispute"] is not None:
            dispute = dispute_of(row, "x_")
        transaction = transaction_of(row)
        if (dispute or transaction).purged_at is not None:
            continue  # removed for retention: no room to open any more
        summary = ChatSummary(
            row["last_preview"], row["last_ts"], row["last_sender"], row["unread"]
        )
        chats.append(Chat(transaction, dispute, summary))
    return rows[0]["me_user_id"], chats

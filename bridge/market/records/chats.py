"""A user's chats in one query: their transactions (as buyer or seller) and the disputes of
those, each with its room's last message and the user's unread count.

One round trip whatever the user's room count (it made about four per room, one after
another). Every lookup is an index probe: the user by its key, their transactions in one
scan of both transactions_by_buyer and _by_seller, each read once (a dispute's chat carries
its transaction's columns and its own, rather than finding them again by key), disputes by
transaction, the latest message and the unread ones by (room_id, ts) (messages_by_time), the
read position by its key.

A chat reads only what the list shows: the whole transaction record (both parties' rows,
their blocked invitations) was a fifth of the query's time at a million transactions
(docs/performance.md, sixteenth round). The web chat, which shows the other party, asks for
that one row.

The latest message: PostgreSQL reads it in one probe (a LATERAL subquery); SQLite, which has
no LATERAL, finds its key, then the row by that key. On PostgreSQL at a million transactions
the second probe was most often a page from outside its shared buffers: one probe took the
query's execution time down by about a fifth (docs/performance.md, sixth round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mautrix.util.async_db import Database, Scheme

from policy.ids import DisputeId, MarketUserId, RoomId, TransactionId, UserId
from policy.states import (
    Access,
    DisputeState,
    TransactionState,
    dispute_access,
    transaction_access,
)

from .messages import ChatSummary

# {key}: which of the user's ids the call names. A user without chats is one row of NULLs
# (hence the LEFT JOINs), an unknown user none. `t` is a chat: its transaction's columns, its
# room (`chat_room`: the dispute's, else the transaction's) and, for a dispute's, the
# dispute's (x_*; NULL for a transaction's chat).
_CHATS = """
WITH me AS (SELECT user_id, matrix_id FROM marketplace_users WHERE {key} = $1),
mine AS (
    SELECT t.transaction_id, t.title, t.state, t.room_id, t.created_at, t.buyer_id,
           t.seller_id, t.access_override, t.purged_at
    FROM me JOIN transactions t ON t.buyer_id = me.user_id OR t.seller_id = me.user_id
),
chats AS (
    SELECT mine.*, mine.room_id AS chat_room, NULL AS x_dispute_id, NULL AS x_state,
           NULL AS x_reason, NULL AS x_created_at, NULL AS x_purged_at
    FROM mine
    UNION ALL
    SELECT mine.*, x.room_id, x.dispute_id, x.state, x.reason, x.created_at, x.purged_at
    FROM mine JOIN disputes x ON x.transaction_id = mine.transaction_id
)
SELECT me.user_id AS me_user_id, t.*, d.dispute_id AS open_dispute, {counterpart},
       m.preview AS last_preview, m.ts AS last_ts, m.sender AS last_sender,
       (SELECT COUNT(*) FROM messages u
        WHERE u.room_id = t.chat_room AND u.sender <> me.matrix_id AND NOT u.deleted
          AND u.ts > COALESCE((SELECT r.ts FROM read_positions r
                               WHERE r.room_id = t.chat_room AND r.user_id = me.matrix_id), 0)
       ) AS unread
FROM me
LEFT JOIN chats t ON 1 = 1
LEFT JOIN disputes d ON d.transaction_id = t.transaction_id AND d.state = 'open'
{counterpart_join}
{latest}
"""
_COUNTERPART = "o.matrix_id AS counterpart"
_COUNTERPART_JOIN = """LEFT JOIN marketplace_users o ON o.user_id =
    CASE WHEN t.buyer_id = me.user_id THEN t.seller_id ELSE t.buyer_id END"""
# The latest message: PostgreSQL's join, then SQLite's (see above).
_LATEST_POSTGRES = """LEFT JOIN LATERAL (
    SELECT l.preview, l.ts, l.sender FROM messages l
    WHERE l.room_id = t.chat_room AND NOT l.deleted ORDER BY l.ts DESC LIMIT 1) m ON TRUE"""
_LATEST_SQLITE = """LEFT JOIN messages m ON m.room_id = t.chat_room AND m.event_id = (
    SELECT l.event_id FROM messages l WHERE l.room_id = t.chat_room AND NOT l.deleted
    ORDER BY l.ts DESC LIMIT 1)"""

# (on SQLite?, which id the call names, with the other party?) -> the query
_QUERIES = {
    (sqlite, key, counterpart): _CHATS.format(
        key=key,
        latest=_LATEST_SQLITE if sqlite else _LATEST_POSTGRES,
        counterpart=_COUNTERPART if counterpart else "NULL AS counterpart",
        counterpart_join=_COUNTERPART_JOIN if counterpart else "",
    )
    for sqlite in (False, True)
    for key in ("user_id", "matrix_id")
    for counterpart in (False, True)
}


@dataclass(frozen=True, slots=True)
class Chat:
    """One room in a user's chat list: a transaction's, or one of its disputes' (which has
    its transaction's id, title and the user's role)."""

    transaction_id: TransactionId
    dispute_id: DisputeId | None
    title: str
    role: Literal["buyer", "seller"]
    room_id: RoomId | None  # None while the room is being made
    created_at: int
    transaction_state: TransactionState
    dispute_state: DisputeState | None
    open_dispute: bool  # the transaction has an open dispute
    access_override: Access | None  # an admin's lock or unlock of the transaction's room
    reason: str | None  # the dispute's
    counterpart: UserId | None  # the other party's Matrix ID, when asked for
    summary: ChatSummary

    @property
    def key(self) -> str:
        return self.dispute_id or self.transaction_id

    @property
    def state(self) -> TransactionState | DisputeState:
        return self.transaction_state if self.dispute_state is None else self.dispute_state

    @property
    def archived(self) -> bool:
        if self.dispute_state is not None:
            return self.dispute_state is DisputeState.RESOLVED
        return self.transaction_state is TransactionState.CLOSED

    def access(self, freeze_on_dispute: bool) -> Access:
        """Who may post in the chat's room now (as TransactionRecord.access for a
        transaction's)."""
        if self.dispute_state is not None:
            return dispute_access(self.dispute_state)
        return transaction_access(
            self.transaction_state, self.open_dispute, freeze_on_dispute, self.access_override
        )


async def chats_of(
    db: Database,
    *,
    user_id: MarketUserId | None = None,
    matrix_id: UserId | None = None,
    counterpart: bool = False,
) -> tuple[MarketUserId, list[Chat]] | None:
    """The user (named by either id) and their chats, unordered (rooms removed for retention
    left out), with the other party's Matrix ID if ``counterpart``; None for an unknown
    user."""
    key, value = ("user_id", user_id) if user_id is not None else ("matrix_id", matrix_id)
    rows = await db.fetch(_QUERIES[db.scheme == Scheme.SQLITE, key, counterpart], value)
    if not rows:
        return None
    me = rows[0]["me_user_id"]
    chats = []
    for row in rows:
        if row["transaction_id"] is None:  # the user has no chats
            continue
        dispute_id = row["x_dispute_id"]
        if (row["x_purged_at"] if dispute_id else row["purged_at"]) is not None:
            continue  # removed for retention: no room to open any more
        override = row["access_override"]
        chats.append(
            Chat(
                transaction_id=row["transaction_id"],
                dispute_id=dispute_id,
                title=row["title"],
                role="buyer" if row["buyer_id"] == me else "seller",
                room_id=row["chat_room"],
                created_at=row["x_created_at"] if dispute_id else row["created_at"],
                transaction_state=TransactionState(row["state"]),
                dispute_state=DisputeState(row["x_state"]) if dispute_id else None,
                open_dispute=row["open_dispute"] is not None,
                access_override=Access(override) if override else None,
                reason=row["x_reason"],
                counterpart=row["counterpart"],
                summary=ChatSummary(
                    row["last_preview"], row["last_ts"], row["last_sender"], row["unread"]
                ),
            )
        )
    return me, chats

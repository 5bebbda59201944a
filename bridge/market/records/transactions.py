"""Marketplace records: users, transactions and the bot's recorded Matrix actions."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mautrix.util.async_db import Connection, Database

from bridge.delivery.outbox import add_notifications
from bridge.market.audit import AuditEntry, write_audit
from bridge.market.errors import MarketError
from bridge.storage.database import rows_affected
from policy.notifications import Notification, Participant, RoomContext
from policy.states import (
    Access,
    DisputeState,
    Outcome,
    TransactionState,
    Transition,
    dispute_access,
    transaction_access,
)


@dataclass(frozen=True, slots=True)
class Party:
    user_id: str
    matrix_id: str


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    transaction_id: str
    title: str
    buyer: Party
    seller: Party
    state: TransactionState
    outcome: Outcome | None
    room_id: str | None
    room_version: str
    created_at: int
    paid_at: int | None
    closed_at: int | None
    open_dispute: str | None = None
    access_override: str | None = None  # an admin's lock/unlock: 'locked' or 'open'


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    dispute_id: str
    transaction_id: str
    reason: str
    opened_by: str
    state: DisputeState
    decision: str | None
    note: str | None
    resolved_by: str | None
    source: str | None
    room_id: str | None
    room_version: str
    created_at: int
    resolved_at: int | None


def _dispute(row) -> DisputeRecord:
    return DisputeRecord(**{**dict(row), "state": DisputeState(row["state"])})


_SELECT_TRANSACTION = """
    SELECT t.transaction_id, t.title, t.state, t.outcome, t.room_id, t.room_version,
           t.created_at, t.paid_at, t.closed_at,
           t.buyer_id, b.matrix_id AS buyer_matrix_id,
           t.seller_id, s.matrix_id AS seller_matrix_id, d.dispute_id AS open_dispute,
           t.access_override
    FROM transactions t
    JOIN marketplace_users b ON b.user_id = t.buyer_id
    JOIN marketplace_users s ON s.user_id = t.seller_id
    LEFT JOIN disputes d ON d.transaction_id = t.transaction_id AND d.state = 'open'
"""

_SELECT_DISPUTE = """
    SELECT dispute_id, transaction_id, reason, opened_by, state, decision, note, resolved_by,
           source, room_id, room_version, created_at, resolved_at
    FROM disputes
"""


@dataclass(frozen=True, slots=True)
class ChatSummary:
    last_message: str | None
    last_message_at: int | None
    last_sender: str | None
    unread: int


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


async def _summary(conn: Connection, room_id: str | None, reader: str) -> ChatSummary:
    if room_id is None:
        return ChatSummary(None, None, None, 0)
    last = await conn.fetchrow(
        "SELECT preview, ts, sender FROM messages WHERE room_id = $1 AND NOT deleted"
        " ORDER BY ts DESC LIMIT 1",
        room_id,
    )
    read_ts = await conn.fetchval(
        "SELECT ts FROM read_positions WHERE room_id = $1 AND user_id = $2", room_id, reader
    )
    unread = await unread_count(conn, room_id, reader, read_ts or 0)
    if last is None:
        return ChatSummary(None, None, None, unread)
    return ChatSummary(last["preview"], last["ts"], last["sender"], unread)


async def unread_count(conn: Connection, room_id: str, reader: str, read_ts: int) -> int:
    """Messages from others after the reader's read position (deleted ones do not count)."""
    return await conn.fetchval(
        "SELECT COUNT(*) FROM messages WHERE room_id = $1 AND sender <> $2 AND NOT deleted"
        " AND ts > $3",
        room_id,
        reader,
        read_ts,
    )


def room_context(
    record: TransactionRecord,
    bot: str,
    admins: list[str],
    dispute: DisputeRecord | None = None,
) -> RoomContext:
    """Who is in the transaction's room (or its dispute's), as notifications describe them."""
    return RoomContext(
        room_id=(dispute.room_id if dispute else record.room_id) or "",
        kind="dispute" if dispute else "transaction",
        transaction_id=record.transaction_id,
        dispute_id=dispute.dispute_id if dispute else None,
        participants=(
            Participant(record.buyer.user_id, record.buyer.matrix_id, "buyer"),
            Participant(record.seller.user_id, record.seller.matrix_id, "seller"),
            *(Participant(None, admin, "admin") for admin in admins),
        ),
        bot=bot,
    )


def room_access(
    record: TransactionRecord, freeze_on_dispute: bool, dispute: DisputeRecord | None = None
) -> Access:
    """Who may post in the transaction's room (or in this dispute's room) now."""
    if dispute is not None:
        return dispute_access(dispute.state)
    return transaction_access(
        record.state,
        record.open_dispute is not None,
        freeze_on_dispute,
        Access(record.access_override) if record.access_override else None,
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def _record(row) -> TransactionRecord:
    return TransactionRecord(
        transaction_id=row["transaction_id"],
        title=row["title"],
        buyer=Party(row["buyer_id"], row["buyer_matrix_id"]),
        seller=Party(row["seller_id"], row["seller_matrix_id"]),
        state=TransactionState(row["state"]),
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        room_id=row["room_id"],
        room_version=row["room_version"],
        created_at=row["created_at"],
        paid_at=row["paid_at"],
        closed_at=row["closed_at"],
        open_dispute=row["open_dispute"],
        access_override=row["access_override"],
    )


class Records:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_transaction(self, transaction_id: str) -> TransactionRecord | None:
        row = await self._db.fetchrow(
            _SELECT_TRANSACTION + " WHERE t.transaction_id = $1", transaction_id
        )
        return _record(row) if row else None

    async def chat_list(self, user_id: str) -> list[Chat] | None:
        """The user's transaction and dispute rooms, newest first, with their last message and
        unread count; None when the marketplace never named this user."""
        matrix_id = await self._db.fetchval(
            "SELECT matrix_id FROM marketplace_users WHERE user_id = $1", user_id
        )
        if matrix_id is None:
            return None
        rows = await self._db.fetch(
            _SELECT_TRANSACTION + " WHERE t.buyer_id = $1 OR t.seller_id = $1", user_id
        )
        chats = []
        async with self._db.acquire() as conn:
            for row in rows:
                record = _record(row)
                summary = await _summary(conn, record.room_id, matrix_id)
                chats.append(Chat(record, None, summary))
                for dispute_row in await conn.fetch(
                    _SELECT_DISPUTE + " WHERE transaction_id = $1", record.transaction_id
                ):
                    dispute = _dispute(dispute_row)
                    summary = await _summary(conn, dispute.room_id, matrix_id)
                    chats.append(Chat(record, dispute, summary))
        chats.sort(key=lambda chat: (-chat.created_at, chat.key))
        return chats

    async def insert_transaction(
        self, transaction_id: str, title: str, buyer: Party, seller: Party, room_version: str
    ) -> tuple[TransactionRecord, bool]:
        """Store a new transaction, or find the identical one; True when it is new.

        Raises 409 `MARKET_CONFLICT` when the id exists with other content (naming the
        fields) or when a party's user id or Matrix ID is already bound to another.
        """
        now = now_ms()
        async with self._db.acquire() as conn, conn.transaction():
            existing = await _fetch_transaction(conn, transaction_id)
            inserted = None
            if existing is None:
                for role, party in (("buyer", buyer), ("seller", seller)):
                    await _bind_user(conn, role, party, now)
                inserted = await conn.fetchval(
                    "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state,"
                    " room_version, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id",
                    transaction_id,
                    title,
                    buyer.user_id,
                    seller.user_id,
                    TransactionState.AWAITING_PAYMENT.value,
                    room_version,
                    now,
                )
            record = existing or await _fetch_transaction(conn, transaction_id)
        assert record is not None
        _refuse_different(
            f"transaction {transaction_id}",
            ("title", title, record.title),
            ("buyer", buyer, record.buyer),
            ("seller", seller, record.seller),
        )
        return record, inserted is not None

    async def set_room(self, transaction_id: str, room_id: str) -> TransactionRecord:
        await self._db.execute(
            "UPDATE transactions SET room_id = $2 WHERE transaction_id = $1 AND room_id IS NULL",
            transaction_id,
            room_id,
        )
        record = await self.get_transaction(transaction_id)
        assert record is not None and record.room_id == room_id, "one room per transaction"
        return record

    async def apply_transition(
        self,
        record: TransactionRecord,
        transition: Transition,
        notification: Notification,
        audit: AuditEntry,
        retry_for_ms: int,
    ) -> TransactionRecord | None:
        """Write a decided transition, its audit entry and its notification in one database
        transaction,
        provided the state is still the one the transition was decided on (else None: another
        bridge process changed it meanwhile)."""
        stamp = "paid_at" if transition.state is TransactionState.PAID else "closed_at"
        try:
            return await self._apply_transition(
                record, transition, notification, audit, retry_for_ms, stamp
            )
        except _DisputeOpenedMeanwhile:
            return None

    async def _apply_transition(
        self,
        record: TransactionRecord,
        transition: Transition,
        notification: Notification,
        audit: AuditEntry,
        retry_for_ms: int,
        stamp: str,
    ) -> TransactionRecord | None:
        async with self._db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                f"UPDATE transactions SET state = $2, outcome = $3, {stamp} = $4,"  # noqa: S608
                " access_override = NULL WHERE transaction_id = $1 AND state = $5",
                record.transaction_id,
                transition.state.value,
                transition.outcome.value if transition.outcome else None,
                notification.occurred_at,
                record.state.value,
            )
            if rows_affected(status) == 0:
                return None
            # The UPDATE holds the row, which opening a dispute takes first (insert_dispute):
            # a dispute another process opened meanwhile is visible now. Undo, and decide again.
            if await conn.fetchval(
                "SELECT 1 FROM disputes WHERE transaction_id = $1 AND state = 'open'",
                record.transaction_id,
            ):
                raise _DisputeOpenedMeanwhile
            stream = record.room_id or f"transaction:{record.transaction_id}"
            await add_notifications(conn, stream, [notification], retry_for_ms)
            await write_audit(conn, audit, notification.occurred_at)
            updated = await _fetch_transaction(conn, record.transaction_id)
        assert updated is not None
        return updated

    async def get_dispute(self, dispute_id: str) -> DisputeRecord | None:
        row = await self._db.fetchrow(_SELECT_DISPUTE + " WHERE dispute_id = $1", dispute_id)
        return _dispute(row) if row else None

    async def insert_dispute(
        self,
        dispute_id: str,
        transaction: TransactionRecord,
        reason: str,
        opened_by: str,
        notification: Notification,
        audit: AuditEntry,
        retry_for_ms: int,
    ) -> tuple[DisputeRecord, bool]:
        """Open a dispute (and queue dispute.opened), or find the identical one; True when new.

        409 `MARKET_CONFLICT` naming the fields when the id exists with other content.
        """
        async with self._db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SELECT_DISPUTE + " WHERE dispute_id = $1", dispute_id)
            created = row is None
            if created:
                # Take the transaction's row, and only while it is still paid: a close or a
                # payment in another bridge process either went first (and this refuses) or
                # waits for this one to commit (and then sees the dispute; apply_transition).
                status = await conn.execute(
                    "UPDATE transactions SET access_override = NULL"
                    " WHERE transaction_id = $1 AND state = $2",
                    transaction.transaction_id,
                    TransactionState.PAID.value,
                )
                if rows_affected(status) == 0:
                    raise MarketError.invalid_state(
                        "a dispute needs a paid transaction; this one changed meanwhile"
                    )
                await conn.execute(
                    "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
                    " room_version, created_at) VALUES ($1, $2, $3, $4, 'open', $5, $6)",
                    dispute_id,
                    transaction.transaction_id,
                    reason,
                    opened_by,
                    transaction.room_version,
                    notification.occurred_at,
                )
                stream = transaction.room_id or f"transaction:{transaction.transaction_id}"
                await add_notifications(conn, stream, [notification], retry_for_ms)
                await write_audit(conn, audit, notification.occurred_at)
                await _clear_override(conn, transaction.transaction_id)
                row = await conn.fetchrow(_SELECT_DISPUTE + " WHERE dispute_id = $1", dispute_id)
        dispute = _dispute(row)
        _refuse_different(
            f"dispute {dispute_id}",
            ("transaction_id", transaction.transaction_id, dispute.transaction_id),
            ("reason", reason, dispute.reason),
            ("opened_by", opened_by, dispute.opened_by),
        )
        return dispute, created

    async def set_dispute_room(self, dispute_id: str, room_id: str) -> DisputeRecord:
        await self._db.execute(
            "UPDATE disputes SET room_id = $2 WHERE dispute_id = $1 AND room_id IS NULL",
            dispute_id,
            room_id,
        )
        dispute = await self.get_dispute(dispute_id)
        assert dispute is not None and dispute.room_id == room_id, "one room per dispute"
        return dispute

    async def resolve_dispute(
        self,
        dispute: DisputeRecord,
        decision: str,
        note: str,
        resolved_by: str,
        source: str,
        notification: Notification,
        audit: AuditEntry,
        stream: str,
        retry_for_ms: int,
    ) -> DisputeRecord | None:
        """Resolve and queue dispute.resolved in one transaction; None if it changed meanwhile."""
        async with self._db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE disputes SET state = 'resolved', decision = $2, note = $3,"
                " resolved_by = $4, source = $5, resolved_at = $6"
                " WHERE dispute_id = $1 AND state = 'open'",
                dispute.dispute_id,
                decision,
                note,
                resolved_by,
                source,
                notification.occurred_at,
            )
            if rows_affected(status) == 0:
                return None
            await add_notifications(conn, stream, [notification], retry_for_ms)
            await write_audit(conn, audit, notification.occurred_at)
            await _clear_override(conn, dispute.transaction_id)
            row = await conn.fetchrow(
                _SELECT_DISPUTE + " WHERE dispute_id = $1", dispute.dispute_id
            )
        return _dispute(row)

    async def set_override(self, transaction_id: str, override: str | None) -> None:
        await self._db.execute(
            "UPDATE transactions SET access_override = $2 WHERE transaction_id = $1",
            transaction_id,
            override,
        )

    async def open_disputes(self) -> list[DisputeRecord]:
        rows = await self._db.fetch(_SELECT_DISPUTE + " WHERE state = 'open' ORDER BY created_at")
        return [_dispute(row) for row in rows]

    async def setting(self, key: str) -> str | None:
        return await self._db.fetchval("SELECT value FROM settings WHERE key = $1", key)

    async def set_setting(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def audit(self, entry: AuditEntry) -> None:
        async with self._db.acquire() as conn:
            await write_audit(conn, entry)

    async def transaction_by_room(self, room_id: str) -> TransactionRecord | None:
        async with self._db.acquire() as conn:
            return await transaction_in_room(conn, room_id)

    async def dispute_by_room(
        self, room_id: str
    ) -> tuple[DisputeRecord, TransactionRecord] | None:
        async with self._db.acquire() as conn:
            return await dispute_in_room(conn, room_id)

    async def muted(self, room_id: str, now: int) -> tuple[str, ...]:
        """Who is muted in the room at ``now``."""
        rows = await self._db.fetch(
            "SELECT user_id FROM mutes WHERE room_id = $1 AND until > $2 ORDER BY user_id",
            room_id,
            now,
        )
        return tuple(row["user_id"] for row in rows)

    async def lift_mute(self, room_id: str, user_id: str, now: int) -> bool:
        """End a mute that has run out; False when there is none (or it was extended)."""
        status = await self._db.execute(
            "DELETE FROM mutes WHERE room_id = $1 AND user_id = $2 AND until <= $3",
            room_id,
            user_id,
            now,
        )
        return rows_affected(status) > 0

    async def active_rooms(self) -> list[str]:
        """Rooms of transactions not closed and of open disputes: the scheduled repair's."""
        rows = await self._db.fetch(
            "SELECT room_id FROM transactions WHERE state <> 'closed' AND room_id IS NOT NULL"
            " UNION SELECT room_id FROM disputes WHERE state = 'open' AND room_id IS NOT NULL"
        )
        return [row["room_id"] for row in rows]

    async def transaction_ids(self) -> list[str]:
        rows = await self._db.fetch("SELECT transaction_id FROM transactions ORDER BY created_at")
        return [row["transaction_id"] for row in rows]

    async def dispute_ids(self) -> list[str]:
        rows = await self._db.fetch("SELECT dispute_id FROM disputes ORDER BY created_at")
        return [row["dispute_id"] for row in rows]

    async def done_actions(self, room_id: str) -> set[str]:
        """The keys of the actions the bot has completed in a room."""
        rows = await self._db.fetch(
            "SELECT action_key FROM bot_actions WHERE room_id = $1 AND event_id IS NOT NULL",
            room_id,
        )
        return {row["action_key"] for row in rows}

    async def record_action(self, key: str, room_id: str, event_id: str) -> None:
        now = now_ms()
        await self._db.execute(
            "INSERT INTO bot_actions (action_key, room_id, event_id, created_at, done_at)"
            " VALUES ($1, $2, $3, $4, $4)"
            " ON CONFLICT (action_key) DO UPDATE SET event_id = excluded.event_id,"
            " done_at = excluded.done_at",
            key,
            room_id,
            event_id,
            now,
        )


async def _fetch_transaction(conn: Connection, transaction_id: str) -> TransactionRecord | None:
    row = await conn.fetchrow(_SELECT_TRANSACTION + " WHERE t.transaction_id = $1", transaction_id)
    return _record(row) if row else None


def _refuse_different(what: str, *fields: tuple[str, object, object]) -> None:
    """409 naming every field a repeated create changed: ids are not reused for other things."""
    differing = [name for name, ours, theirs in fields if ours != theirs]
    if differing:
        raise MarketError.conflict(
            f"{what} exists with a different " + ", ".join(differing), fields=differing
        )


class _DisputeOpenedMeanwhile(Exception):
    """Rolls back a transition that found a dispute opened by another process."""


async def _clear_override(conn: Connection, transaction_id: str) -> None:
    await conn.execute(
        "UPDATE transactions SET access_override = NULL WHERE transaction_id = $1",
        transaction_id,
    )


async def transaction_in_room(conn: Connection, room_id: str) -> TransactionRecord | None:
    row = await conn.fetchrow(_SELECT_TRANSACTION + " WHERE t.room_id = $1", room_id)
    return _record(row) if row else None


async def dispute_in_room(
    conn: Connection, room_id: str
) -> tuple[DisputeRecord, TransactionRecord] | None:
    row = await conn.fetchrow(_SELECT_DISPUTE + " WHERE room_id = $1", room_id)
    if row is None:
        return None
    dispute = _dispute(row)
    transaction = await _fetch_transaction(conn, dispute.transaction_id)
    assert transaction is not None
    return dispute, transaction


async def _bind_user(conn: Connection, role: str, party: Party, now: int) -> None:
    await conn.execute(
        "INSERT INTO marketplace_users (user_id, matrix_id, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        party.user_id,
        party.matrix_id,
        now,
    )
    rows = await conn.fetch(
        "SELECT user_id, matrix_id FROM marketplace_users WHERE user_id = $1 OR matrix_id = $2",
        party.user_id,
        party.matrix_id,
    )
    for row in rows:
        if (row["user_id"], row["matrix_id"]) != (party.user_id, party.matrix_id):
            raise MarketError.conflict(
                f"{role}: marketplace user {row['user_id']} is bound to {row['matrix_id']}",
                fields=[f"{role}.user_id", f"{role}.matrix_id"],
            )

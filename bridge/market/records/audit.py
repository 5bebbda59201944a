"""The audit trail: every action the bot takes and every command it is given.

Each entry says who (the actor: the bot, an admin, the marketplace), what (the action and its
outcome), to whom (the subject: a user or an event), why (the reason: a rule, a cause, a
command), where (the room, and the transaction and dispute it belongs to) and when. Entries
are written beside the change they describe, in the same database transaction where there is
one, and are read back through ``GET /api/v1/audit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database

from bridge.runtime.clock import Clock
from bridge.storage.writes import Writes
from policy.ids import DisputeId, RoomId, TransactionId

DETAIL_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str  # room.created, member.removed, message.redacted, user.muted, command, ...
    room_id: RoomId | str  # "" when the action concerns no room yet
    outcome: str = "done"  # done, refused or failed
    subject: str | None = None
    reason: str | None = None
    detail: str = ""
    transaction_id: TransactionId | None = None  # found from the room when not given
    dispute_id: DisputeId | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    room_id: str | None = None
    transaction_id: TransactionId | None = None
    dispute_id: DisputeId | None = None
    since: int | None = None  # ms, inclusive
    until: int | None = None  # ms, exclusive
    after: int = 0  # the last seq of the previous page
    limit: int = 100


async def write_audit(conn: Connection | Writes, entry: AuditEntry, at: int) -> None:
    """Write ``entry`` as of ``at`` (ms), in the caller's database transaction; without a
    transaction id, the transaction (and dispute) whose room it names, found in the same
    statement."""
    await conn.execute(
        "INSERT INTO audit (at, actor, room_id, action, outcome, detail, transaction_id,"
        " dispute_id, subject, reason) SELECT $1, $2, $3, $4, $5, $6,"
        " COALESCE($7, (SELECT transaction_id FROM transactions WHERE room_id = $3),"
        "  (SELECT transaction_id FROM disputes WHERE room_id = $3)),"
        " CASE WHEN $7 IS NOT NULL THEN $8"
        "  WHEN EXISTS (SELECT 1 FROM transactions WHERE room_id = $3) THEN NULL"
        "  ELSE (SELECT dispute_id FROM disputes WHERE room_id = $3) END, $9, $10",
        at,
        entry.actor,
        entry.room_id,
        entry.action,
        entry.outcome,
        entry.detail[:DETAIL_LIMIT],
        entry.transaction_id,
        entry.dispute_id,
        entry.subject,
        entry.reason[:DETAIL_LIMIT] if entry.reason else entry.reason,
    )


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def write(self, entry: AuditEntry) -> None:
        """Write an entry on its own, as of now."""
        async with self._db.acquire() as conn:
            await write_audit(conn, entry, self._clock.now_ms())

    async def read(self, query: AuditQuery) -> list[dict[str, Any]]:
        """One page of entries, oldest first, after ``query.after``."""
        conditions, args = ["seq > $1"], [query.after]
        for column in ("room_id", "transaction_id", "dispute_id"):
            value = getattr(query, column)
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        if query.since is not None:
            args.append(query.since)
            conditions.append(f"at >= ${len(args)}")
        if query.until is not None:
            args.append(query.until)
            conditions.append(f"at < ${len(args)}")
        args.append(query.limit)
        where = " AND ".join(conditions)  # fixed column names; the values are parameters
        columns = "seq, at, actor, action, outcome, room_id, transaction_id, dispute_id"
        limit = f"${len(args)}"
        sql = f"SELECT {columns}, subject, reason, detail FROM audit WHERE {where}"  # noqa: S608
        sql += f" ORDER BY seq LIMIT {limit}"
        rows = await self._db.fetch(sql, *args)
        return [dict(row) for row in rows]

"""The outbox table: durable notifications, one stream per room, delivered strictly in order.

A row is added in the database transaction of the change it notifies. A stream's head is its
lowest pending row; whoever holds the head's lease (one holder at a time, even across
processes) attempts it (`outbox_worker`). Dead letters unblock their stream; `replay` queues
them again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database

from bridge.storage.database import rows_affected
from policy.notifications import Notification


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    stream: str
    type: str
    body: str
    attempts: int
    retry_until: int
    created_at: int


_ROW = "seq, id, stream, type, body, attempts, retry_until, created_at"
_IS_HEAD = (
    "NOT EXISTS (SELECT 1 FROM outbox p WHERE p.stream = outbox.stream"
    " AND p.status = 'pending' AND p.seq < outbox.seq)"
)


async def add_notifications(
    conn: Connection,
    stream: str,
    notifications: Iterable[Notification],
    retry_for_ms: int,
    now: int,
) -> int:
    """Queue notifications in the caller's transaction; an id already queued is kept as is."""
    added = 0
    for notification in notifications:
        body = json.dumps(notification.body(), separators=(",", ":"), ensure_ascii=False)
        status = await conn.execute(
            "INSERT INTO outbox (id, stream, type, body, next_attempt_at, retry_until,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $5) ON CONFLICT (id) DO NOTHING",
            notification.id,
            stream,
            notification.type,
            body,
            now,
            now + retry_for_ms,
        )
        added += rows_affected(status)
    return added


class Outbox:
    """The outbox table's queries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def due_heads(self, now: int, exclude: set[str], limit: int) -> list[OutboxRow]:
        rows = await self._db.fetch(
            f"SELECT {_ROW} FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1"  # noqa: S608
            f" AND lease_until < $1 AND {_IS_HEAD} ORDER BY seq LIMIT $2",
            now,
            limit + len(exclude),
        )
        return [OutboxRow(**dict(r)) for r in rows if r["stream"] not in exclude][:limit]

    async def lease(self, row: OutboxRow, now: int, until: int) -> bool:
        """Take the row for one attempt, if it is still its stream's due, unleased head."""
        status = await self._db.execute(
            "UPDATE outbox SET lease_until = $2 WHERE seq = $1 AND status = 'pending'"  # noqa: S608
            f" AND next_attempt_at <= $3 AND lease_until < $3 AND {_IS_HEAD}",
            row.seq,
            until,
            now,
        )
        return rows_affected(status) == 1

    async def next_head(self, stream: str) -> OutboxRow | None:
        row = await self._db.fetchrow(
            f"SELECT {_ROW} FROM outbox WHERE stream = $1 AND status = 'pending'"  # noqa: S608
            " ORDER BY seq LIMIT 1",
            stream,
        )
        return OutboxRow(**dict(row)) if row else None

    async def delivered(self, row: OutboxRow, now: int) -> None:
        await self._db.execute(
            "UPDATE outbox SET status = 'delivered', delivered_at = $2, lease_until = 0,"
            " attempts = attempts + 1, last_error = NULL WHERE seq = $1",
            row.seq,
            now,
        )

    async def failed(self, row: OutboxRow, error: str, next_attempt_at: int | None) -> None:
        """Schedule another attempt, or dead-letter the row when ``next_attempt_at`` is None."""
        await self._db.execute(
            "UPDATE outbox SET status = $2, next_attempt_at = $3, lease_until = 0,"
            " attempts = attempts + 1, last_error = $4 WHERE seq = $1",
            row.seq,
            "pending" if next_attempt_at is not None else "dead",
            next_attempt_at or 0,
            error[:500],
        )

    async def depth(self) -> int:
        return await self._db.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT id, stream, type, attempts, last_error, created_at, body FROM outbox"
            " WHERE status = 'dead' ORDER BY seq LIMIT $1",
            limit,
        )
        return [dict(row) for row in rows]

    async def replay(
        self, ids: list[str] | None, stream: str | None, retry_for_ms: int, now: int
    ) -> int:
        """Queue dead letters again (all of them, or those with these ids, or this stream's)."""
        query = (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1,"
            " retry_until = $2, lease_until = 0 WHERE status = 'dead'"
        )
        args: list[Any] = [now, now + retry_for_ms]
        if stream is not None:
            query += " AND stream = $3"
            args.append(stream)
        replayed = 0
        if ids is None:
            replayed = rows_affected(await self._db.execute(query, *args))
        else:
            for webhook_id in ids:
                replayed += rows_affected(
                    await self._db.execute(
                        query + f" AND id = ${len(args) + 1}", *args, webhook_id
                    )
                )
        return replayed

"""The outbox table: durable notifications, one stream per room, delivered strictly in order.

A row is added in the database transaction of the change it notifies. A stream's head is its
lowest pending row; whoever holds the head's lease (one holder at a time, even across
processes) attempts it (`outbox_worker`). Dead letters unblock their stream; `replay` queues
them again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database, Scheme

from bridge.storage.database import rows_affected, unsynced
from bridge.storage.writes import Rows, Writes
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
    """Queue notifications in the caller's transaction; an id already queued is kept as is.
    How many were queued."""
    queued: list[dict] = []
    writes = Writes()
    queue_notifications(writes, stream, notifications, retry_for_ms, now, then=queued.extend)
    await writes.run(conn)
    return len(queued)


def queue_notifications(
    writes: Writes,
    stream: str,
    notifications: Iterable[Notification],
    retry_for_ms: int,
    now: int,
    then: Callable[[Rows], None] | None = None,
    lease_until: int = 0,
) -> None:
    """`add_notifications` among other writes: one INSERT however many; ``then`` is given a
    row for each one queued (its columns as `OutboxRow`'s, and `lease_until`). A
    ``lease_until`` leases the rows until then if their stream had nothing pending, so that
    the caller can hand them to the outbox worker (`handed_over`, `OutboxWorker.take`)
    without a statement to lease them."""
    notifications = list(notifications)
    if not notifications:
        return
    # Seen as the database was before the statement: a stream with a row pending (being
    # delivered, or waiting for its retry) keeps its order, its rows leased by whoever
    # delivers its head.
    lease = (
        "CASE WHEN NOT EXISTS (SELECT 1 FROM outbox p WHERE p.stream = $1"
        " AND p.status = 'pending') THEN CAST($4 AS BIGINT) ELSE 0 END"
    )
    values = ", ".join(
        f"(${5 + 3 * n}, $1, ${6 + 3 * n}, ${7 + 3 * n}, $2, $3, $2, {lease})"
        for n in range(len(notifications))
    )
    writes.add(
        "INSERT INTO outbox (id, stream, type, body, next_attempt_at, retry_until,"  # noqa: S608
        f" created_at, lease_until) VALUES {values} ON CONFLICT (id) DO NOTHING"
        f" RETURNING {_ROW}, lease_until",
        stream,
        now,
        now + retry_for_ms,
        lease_until,
        *(
            value
            for n in notifications
            for value in (
                n.id,
                n.type,
                json.dumps(n.body(), separators=(",", ":"), ensure_ascii=False),
            )
        ),
        then=then,
    )


def handed_over(queued: Rows) -> list[OutboxRow]:
    """The rows `queue_notifications` leased as it queued them, in their stream's order."""
    leased = (
        OutboxRow(**{k: v for k, v in row.items() if k != "lease_until"})
        for row in queued
        if row["lease_until"]
    )
    return sorted(leased, key=lambda row: row.seq)


# Delivered rows one `settle` marks at most (the outbox worker's batch is no bigger). A
# backlog's rows cost one mark each this many: 64 took the delivery benchmark from 0.47-0.48
# of a bare client to 0.50-0.56 against 32 (three runs each); a process killed mid-batch
# sends at most this many again (at least once, same webhook ids).
SETTLE_WIDTH = 64


_LEASE_HEADS = (
    "UPDATE outbox SET lease_until = $2 WHERE seq IN (SELECT seq FROM outbox"  # noqa: S608
    " WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until < $1"
    f" AND {_IS_HEAD} ORDER BY seq LIMIT $3)"
    f" AND status = 'pending' AND lease_until < $1 RETURNING {_ROW}"
)
# What `DueWatch` asks of the outbox each second ($1: now), in one pass over the waiting
# rows: how many wait, when the first lease held ends (None: none), and whether a stream's
# head is due and free.
DUE = (
    "SELECT COUNT(*), MIN(CASE WHEN lease_until >= $1 THEN lease_until END),"  # noqa: S608
    " EXISTS (SELECT 1 FROM outbox WHERE status = 'pending'"
    f" AND next_attempt_at <= $1 AND lease_until < $1 AND {_IS_HEAD})"
    " FROM outbox WHERE status = 'pending'"
)
_MARKED = ", ".join(f"${n}" for n in range(6, 6 + SETTLE_WIDTH))  # the delivered rows' seqs
_SETTLE = (
    "UPDATE outbox SET"  # noqa: S608
    f" status = CASE WHEN seq IN ({_MARKED}) THEN 'delivered' ELSE status END,"
    f" delivered_at = CASE WHEN seq IN ({_MARKED}) THEN CAST($1 AS BIGINT)"
    "  ELSE delivered_at END,"
    f" attempts = CASE WHEN seq IN ({_MARKED}) THEN attempts + 1 ELSE attempts END,"
    f" last_error = CASE WHEN seq IN ({_MARKED}) THEN NULL ELSE last_error END,"
    f" lease_until = CASE WHEN seq IN ({_MARKED}) THEN 0 ELSE CAST($2 AS BIGINT) END"
    # The two sets in one IN (...), not 'seq IN (...) OR seq IN (...)': PostgreSQL plans an
    # OR of two subqueries as a scan of the whole table, delivered rows and all (306 ms a
    # batch at 300,000 rows kept; 0.5 ms this way, through the primary key).
    f" WHERE seq IN (SELECT seq FROM outbox WHERE seq IN ({_MARKED})"
    " UNION ALL SELECT seq FROM (SELECT n.seq FROM outbox n"
    "  WHERE n.stream = $3 AND n.status = 'pending' AND n.seq > $4"
    f"  ORDER BY n.seq LIMIT $5) AS following) RETURNING {_ROW}"
)


@functools.lru_cache(maxsize=256)
def _written(scheme: str, update: str) -> str:
    """``update`` as `Outbox._unsynced` sends it, written once per text: the outbox's few
    statements are on every webhook's way (building the settle's took 24 us a call, a
    tenth of its round trip)."""
    return unsynced(Scheme(scheme), update)


class Outbox:
    """The outbox table's queries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _unsynced(self, update: str) -> str:
        # Leases and delivered marks: a database crash that forgets one costs a repeated
        # delivery (same webhook id), never a lost one.
        return _written(self._db.scheme.value, update)

    async def lease_heads(self, now: int, until: int, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` streams' heads that are due and unleased, in one statement;
        a stream being delivered holds its head's lease, so it is never taken twice."""
        rows = await self._db.fetch(
            self._unsynced(_LEASE_HEADS),
            now,
            until,
            limit,
        )
        return sorted((OutboxRow(**dict(r)) for r in rows), key=lambda row: row.seq)

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
        await self.settle([row], now, 0, 0)

    async def settle(
        self, delivered: list[OutboxRow], now: int, until: int, more: int
    ) -> list[OutboxRow]:
        """Mark a stream's delivered rows so and, in the same statement, lease the ``more``
        pending rows that follow the last of them until ``until``: one round trip for a batch
        of webhooks. Only whoever held the stream's head can have delivered these rows, so
        no one else can hold or take the rows behind them."""
        # The list is padded to a fixed length (the last seq repeated), so the statement's
        # text, and the server's prepared plan for it, is the same for every batch.
        seqs = [row.seq for row in delivered]
        seqs += seqs[-1:] * (SETTLE_WIDTH - len(seqs))
        rows = await self._db.fetch(
            self._unsynced(_SETTLE),
            now,
            until,
            delivered[-1].stream,
            delivered[-1].seq,
            more,
            *seqs,
        )
        done = set(seqs)
        return sorted(
            (OutboxRow(**dict(r)) for r in rows if r["seq"] not in done), key=lambda r: r.seq
        )

    async def release(self, rows: list[OutboxRow], held_until: int | None = None) -> None:
        """Give up the leases of rows not attempted: behind one that failed, or handed over
        when they could not be taken (``held_until``: only while the rows still hold that
        lease, which may have ended and been taken by another since)."""
        if not rows:
            return
        args = [row.seq for row in rows]
        condition = f"seq IN ({', '.join(f'${n}' for n in range(1, 1 + len(args)))})"
        if held_until is not None:
            args.append(held_until)
            condition += f" AND lease_until = ${len(args)}"
        await self._db.execute(
            self._unsynced(f"UPDATE outbox SET lease_until = 0 WHERE {condition}"),  # noqa: S608
            *args,
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

    # Recovery (outbox_worker.py): leases kept alive while their stream's task runs, and the
    # waiting rows made due once the receiver answers again.
    async def renew(self, stream: str, until: int) -> None:
        """Extend the leases held on a stream's rows to ``until`` (never shortening one, nor
        taking back a row whose lease was released: 0)."""
        await self._db.execute(
            self._unsynced(
                "UPDATE outbox SET lease_until = $2 WHERE stream = $1 AND status = 'pending'"
                " AND lease_until > 0 AND lease_until < $2"
            ),
            stream,
            until,
        )

    async def retry_waiting(self, now: int) -> int:
        """Make every row waiting for its retry due now; how many."""
        return rows_affected(
            await self._db.execute(
                "UPDATE outbox SET next_attempt_at = $1"
                " WHERE status = 'pending' AND next_attempt_at > $1",
                now,
            )
        )

    async def bring_forward(self, now: int) -> bool:
        """Make the waiting head whose retry comes first due now; whether one waited."""
        status = await self._db.execute(
            "UPDATE outbox SET next_attempt_at = $1 WHERE seq = (SELECT seq FROM outbox"  # noqa: S608
            f" WHERE status = 'pending' AND next_attempt_at > $1 AND {_IS_HEAD}"
            " ORDER BY next_attempt_at LIMIT 1)",
            now,
        )
        return rows_affected(status) == 1

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

"""The outbox: durable notifications, delivered as signed webhooks, in order per room.

    add (in the caller's DB transaction) -> wake
    worker: due head rows (the lowest pending seq of each stream, its retry time reached)
        -> lease the head (one holder at a time, even across processes) -> signed POST
        -> 2xx: delivered, lease the next head of the same stream at once
        -> anything else (redirects are not followed, timeouts): retry later with exponential
           backoff and jitter, until `retry_for_seconds`; then dead letter, which unblocks
           the stream; `replay` queues dead letters again

Each stream runs in its own task, so a failing receiver for one room never delays another.
A lease outlives one attempt; a process that dies mid-attempt leaves a lease that expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from mautrix.util.async_db import Connection, Database

from bridge.config.settings import WebhooksConfig
from bridge.delivery.signing import Signer
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import drain_when_woken
from bridge.storage.database import rows_affected
from policy.notifications import Notification

POLL_SECONDS = 1.0
MAX_STREAMS = 16
LEASE_MARGIN_MS = 30_000


def now_ms() -> int:
    return int(time.time() * 1000)


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
    conn: Connection, stream: str, notifications: Iterable[Notification], retry_for_ms: int
) -> int:
    """Queue notifications in the caller's transaction; an id already queued is kept as is."""
    now = now_ms()
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

    async def replay(self, ids: list[str] | None, stream: str | None, retry_for_ms: int) -> int:
        """Queue dead letters again (all of them, or those with these ids, or this stream's)."""
        now = now_ms()
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


class OutboxWorker:
    def __init__(
        self,
        outbox: Outbox,
        config: WebhooksConfig,
        session: ClientSession,
        metrics: Metrics,
        on_dead: Callable[[OutboxRow, str], Awaitable[None]] | None = None,
    ) -> None:
        self._outbox = outbox
        self._on_dead = on_dead
        self._config = config
        self._session = session
        self._metrics = metrics
        self._signer = Signer([s.get_secret_value() for s in config.secrets])
        self._wake = asyncio.Event()
        self._streams: dict[str, asyncio.Task] = {}
        self._log = logging.getLogger("bridge.outbox")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        async def drain() -> None:
            await self._start_due_streams()
            self._metrics.outbox_depth.set(await self._outbox.depth())

        try:
            await drain_when_woken(drain, self._wake, self._log, "read the outbox", POLL_SECONDS)
        finally:
            for task in self._streams.values():
                task.cancel()
            await asyncio.gather(*self._streams.values(), return_exceptions=True)

    async def _start_due_streams(self) -> None:
        free = MAX_STREAMS - len(self._streams)
        if free <= 0:
            return
        for row in await self._outbox.due_heads(now_ms(), set(self._streams), free):
            task = asyncio.create_task(self._deliver_stream(row))
            self._streams[row.stream] = task
            task.add_done_callback(lambda _, stream=row.stream: self._stream_done(stream))

    def _stream_done(self, stream: str) -> None:
        self._streams.pop(stream, None)
        self.wake()  # its next row may be due, or another stream may wait for a slot

    async def _deliver_stream(self, row: OutboxRow | None) -> None:
        """Deliver a stream's rows in order while they are due; stop at a failure."""
        stream = row.stream if row else ""
        try:
            while row is not None:
                now = now_ms()
                lease_until = now + int(self._config.timeout_seconds * 1000) + LEASE_MARGIN_MS
                if not await self._outbox.lease(row, now, lease_until):
                    return  # not due, not the head any more, or another process holds it
                if not await self._attempt(row):
                    return
                row = await self._outbox.next_head(row.stream)
        except Exception:
            # The database failed us; an unrecorded attempt is repeated once its lease ends.
            self._log.exception("Delivery to %s stopped; it resumes on a later pass", stream)

    async def _attempt(self, row: OutboxRow) -> bool:
        body = row.body.encode()
        headers = self._signer.headers(row.id, body, int(time.time()))
        try:
            async with self._session.post(
                str(self._config.url),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=ClientTimeout(total=self._config.timeout_seconds),
            ) as response:
                ok, error = 200 <= response.status < 300, f"HTTP {response.status}"
        except (ClientError, TimeoutError, OSError) as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        now = now_ms()
        if ok:
            await self._outbox.delivered(row, now)
            self._metrics.webhooks_delivered.inc()
            self._metrics.webhook_latency.observe((now - row.created_at) / 1000)
            return True
        next_attempt = self._next_attempt(row, now)
        await self._outbox.failed(row, error, next_attempt)
        if next_attempt is None:
            self._metrics.webhooks_dead.inc()
            self._log.warning(
                "Dead-lettered webhook %s (%s) of %s: %s", row.id, row.type, row.stream, error
            )
            if self._on_dead is not None:
                try:
                    await self._on_dead(row, error)
                except Exception:  # telling the admins must not stop delivery
                    self._log.exception("Could not announce dead letter %s", row.id)
        else:
            self._metrics.webhooks_retried.inc()
            # Look again when the retry is due rather than at the next poll.
            asyncio.get_running_loop().call_later((next_attempt - now) / 1000, self.wake)
            self._log.info("Webhook %s of %s failed (%s); retrying", row.id, row.stream, error)
        return False

    def _next_attempt(self, row: OutboxRow, now: int) -> int | None:
        if now >= row.retry_until:
            return None
        delay = min(
            self._config.backoff_max_seconds,
            self._config.backoff_initial_seconds * 2**row.attempts,
        )
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not security)
        return min(now + int(delay * 1000), row.retry_until)

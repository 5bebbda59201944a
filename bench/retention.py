"""11. Retention: pruning the bridge's own tables at 1,000,000 messages, and bounded growth.

A fresh PostgreSQL database, migrated by the bridge's own code, and a year of a busy
marketplace in it (COPY): retention_messages messages in rooms of about 50 (10 to 90), each
room's chat lasting 1 to 14 days from a start spread over the year and its deal closed 1 hour
to 3 days after its last message (the youngest rooms are still open at the year's end). Each
message is what the bridge leaves of it, rows in time order as the bridge wrote them:

    inbox_events   the event as the homeserver pushed it, processed ('done')
    messages       the chat list's row (its preview)
    outbox         its message.created webhook (the body the bridge makes), delivered 0.2 to
                   3 s later; one in DEAD_EVERY a dead letter instead (retries ended after a day)

Then retention as the bridge applies it, webhooks_days 30 and rooms kept 90 days after their
close (the bridge's retention worker, bridge/retention/worker.py, makes the same calls):

(a) prune_webhooks(db, end - 30 days): delivered webhooks and dead letters older than that,
    5,000 rows a statement; its time and the rows deleted (each statement timed too)
(b) prune_room, one database transaction a room as the worker's last step makes it, for every
    room closed more than 90 days before the year's end, one after another: ms per room
(c) the three tables' rows and pg_total_relation_size before and after, and after VACUUM
    (ANALYZE), run here as autovacuum would (the test server has it off): a plain VACUUM
    frees the space for new rows and gives none back to the file system
(d) a second year of the same load (other ids, same shape) on top, in twelve monthly steps as
    a bridge in its steady state prunes: each month loaded, then pruned as in (a) and (b),
    then VACUUM (ANALYZE); the rows after it against those after the first year (target
    <= 1.1), and the space: the largest the tables got in year 2 (before a month's prune)
    and at its end, against the first year's after VACUUM.

The other tables of ROOM_TABLES are empty here (prune_room still deletes from each). CPU:
under plain names the pruning of the first year ((a) and (b)); "(year 2)" the twelve prunes
of the second (loading and VACUUM not metered). The database's backends are sampled while
pruning, as the pool replaces its connection every 50,000 queries (asyncpg's max_queries)
and a backend gone by the end would read 0. The DELETEs' plans are in the notes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import string
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from mautrix.util.async_db import Database

from bridge.retention.records import PRUNE_BATCH, prune_room, prune_webhooks
from bridge.storage.database import create_database, start_database
from policy.notifications import (
    Participant,
    RoomContext,
    message_notifications,
    notification_id,
)
from policy.rooms import RoomKind

from .cpu import cpu_seconds
from .env import Env
from .plan import Scale
from .report import Figure, Result, at_most, percentiles

HOUR, DAY = 3_600_000, 86_400_000
YEAR = 365 * DAY
WEBHOOKS_DAYS = 30  # config.example.yaml: retention.webhooks_days
ROOMS_DAYS = 90  # closed_transaction_days, for every outcome (the example keeps them: off)
MESSAGES_PER_ROOM = (10, 90)  # 50 on average
DEAD_EVERY = 1000  # one webhook in 1,000 a dead letter
RETRY_FOR = DAY  # config.example.yaml: webhooks.retry_for_seconds
MONTHS = 12  # the second year's steps
CHUNK = 50_000  # rows a COPY
TARGET_GROWTH = 1.1  # rows after the second year / after the first
TABLES = ("outbox", "inbox_events", "messages")
MB = 2**20
SAMPLE_SECONDS = 0.1  # the database's backends' CPU, read this often while pruning

BOT = "@marketbot:localhost"
INBOX_COLUMNS = [
    *("event_id", "room_id", "event_type", "sender", "origin_server_ts", "event_json"),
    *("status", "txn_id", "received_at"),
]
MESSAGE_COLUMNS = ["room_id", "event_id", "sender", "ts", "preview", "deleted"]
OUTBOX_COLUMNS = [
    *("id", "stream", "type", "body", "status", "attempts", "next_attempt_at", "retry_until"),
    *("lease_until", "created_at", "delivered_at", "last_error"),
]
# The event as the homeserver pushes it to an appservice (the words need no escaping).
EVENT_JSON = (
    '{{"content":{{"body":"{text}","msgtype":"m.text"}},"event_id":"{event}",'
    '"origin_server_ts":{ts},"room_id":"{room}","sender":"{sender}",'
    '"type":"m.room.message","unsigned":{{"age":{age}}},"user_id":"{sender}"}}'
)
_WORDS = (
    "hi is it still available can you send the measurements I can come by tomorrow evening "
    "thanks paid just now please ship with tracking it arrived in great condition would you "
    "take a bit less for it the paint has a few scratches but it works well sure no problem"
).split()


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    transaction_id: str
    buyer: tuple[str, str]  # marketplace id, Matrix ID
    seller: tuple[str, str]
    closed_at: int


@dataclass
class Year:
    """One year's load: its rooms, and its messages in time order (ts, room, k-th of room)."""

    start: int
    rooms: list[Room]
    said: list[tuple[int, int, int]]


@dataclass
class Snapshot:
    rows: dict[str, int]
    size: dict[str, int]  # bytes, pg_total_relation_size

    def total_mb(self) -> float:
        return sum(self.size.values()) / MB

    def text(self) -> str:
        return ", ".join(f"{t} {self.rows[t]:,} rows {self.size[t] / MB:.1f} MB" for t in TABLES)


@dataclass
class Prune:
    """What one round of pruning did."""

    webhooks: int = 0
    webhook_seconds: float = 0.0
    statements_ms: list[float] = field(default_factory=list)  # prune_webhooks' DELETEs
    rooms: int = 0
    room_rows: int = 0
    room_ms: list[float] = field(default_factory=list)


class TimedDatabase:
    """The pool as prune_webhooks uses it, each statement timed."""

    def __init__(self, db: Database, times: list[float]) -> None:
        self._db = db
        self.scheme = db.scheme  # the prune writes its batch for the backend
        self._times = times

    async def execute(self, query: str, *args):
        started = time.perf_counter()
        status = await self._db.execute(query, *args)
        self._times.append((time.perf_counter() - started) * 1000)
        return status


@dataclass
class SecondYear:
    months: list[Prune] = field(default_factory=list)
    month_cpu: list[dict[str, float]] = field(default_factory=list)
    peak_mb: float = 0.0
    peak_rows: int = 0
    load_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    final: Snapshot | None = None

    def room_ms(self) -> list[float]:
        return [ms for month in self.months for ms in month.room_ms]

    def cpu(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for month in self.month_cpu:
            for name, seconds in month.items():
                total[name] = round(total.get(name, 0.0) + seconds, 2)
        return total

    def text(self) -> str:
        months = [
            f"{m.webhooks:,} webhooks {m.webhook_seconds:.2f}s (slowest DELETE "
            f"{max(m.statements_ms):.0f} ms), {m.rooms:,} rooms {sum(m.room_ms) / 1000:.1f}s, "
            f"postgres CPU {cpu.get('postgres', 0.0):.1f}s"
            for m, cpu in zip(self.months, self.month_cpu, strict=True)
        ]
        return (
            f"year 2 in {len(self.months)} monthly steps (load, prune, VACUUM; loads "
            f"{self.load_seconds:.0f}s, VACUUMs {self.vacuum_seconds:.0f}s); at most "
            f"{self.peak_rows:,} rows before a month's prune; each month: " + " / ".join(months)
        )


async def run(env: Env, scale: Scale) -> Result:
    result = Result("retention", work=(scale.retention_messages, "message"))
    started = time.monotonic()
    url = await env.postgres()
    config = env.bridge_config(url)
    db = create_database(config.database)
    await start_database(db)  # the schema, as the bridge makes it
    conn = await asyncpg.connect(url, timeout=10)
    rng = random.Random(11)  # noqa: S311 (test data, not security)
    end1 = int(time.time() * 1000) - YEAR  # the first year ends a year ago, the second now
    rooms: list[Room] = []
    pruned: set[int] = set()
    try:
        # Year 1: a year's rows at once (a bridge upgraded to retention after a year), pruned.
        loading = time.monotonic()
        year1 = _year(rng, scale.retention_messages, end1 - YEAR, len(rooms), "a")
        rooms += year1.rooms
        await _load(conn, rng, rooms, year1.said)
        await conn.execute("ANALYZE")  # as autovacuum would after a bulk load
        load_seconds = time.monotonic() - loading
        before = await _snapshot(conn)
        plans = await _plans(conn, end1 - WEBHOOKS_DAYS * DAY)
        first, cpu = await _metered(env, conn, _prune(db, rooms, pruned, end1))
        result.cpu_seconds.update(cpu)
        after = await _snapshot(conn)
        vacuuming = time.monotonic()
        await _vacuum(conn)
        vacuum_seconds = time.monotonic() - vacuuming
        vacuumed = await _snapshot(conn)
        _check(before, after, first, scale.retention_messages)
        # Year 2: the same load on top, a month at a time, pruned after each.
        year2 = _year(rng, scale.retention_messages, end1, len(rooms), "b")
        rooms += year2.rooms
        left = sum(vacuumed.rows.values())
        second = await _second_year(env, db, conn, rng, rooms, pruned, year2, left)
    finally:
        await conn.close()
        await db.stop()
    for name, seconds in second.cpu().items():
        result.cpu_seconds[f"{name} (year 2)"] = seconds
    assert second.final is not None
    final = second.final

    rows1, rows2 = sum(vacuumed.rows.values()), sum(final.rows.values())
    rooms1 = percentiles(first.room_ms or [0.0])
    rooms2 = percentiles(second.room_ms() or [0.0])
    webhook_statements = first.statements_ms or [0.0]
    month_seconds = [m.webhook_seconds + sum(m.room_ms) / 1000 for m in second.months]
    result.figures = [
        Figure("(a) webhooks deleted", first.webhooks, "rows"),
        Figure("(a) prune_webhooks", first.webhook_seconds, "s"),
        Figure("(a) webhooks deleted a second", first.webhooks / first.webhook_seconds, "rows/s"),
        Figure("(a) DELETE of 5,000: first", webhook_statements[0], "ms"),
        Figure("(a) DELETE of 5,000: slowest", max(webhook_statements), "ms"),
        Figure("(b) rooms pruned", first.rooms, "rooms"),
        Figure("(b) rows deleted", first.room_rows, "rows"),
        Figure("(b) prune_room p50", rooms1["p50"], "ms"),
        Figure("(b) prune_room p99", rooms1["p99"], "ms"),
        Figure("(b) prune_room max", rooms1["max"], "ms"),
        Figure("(b) every room", sum(first.room_ms) / 1000, "s"),
    ]
    for table in TABLES:
        result.figures += [
            Figure(f"(c) {table} rows before", before.rows[table], "rows"),
            Figure(f"(c) {table} rows after", after.rows[table], "rows"),
        ]
    result.figures += [
        Figure("(c) 3 tables before", before.total_mb(), "MB"),
        Figure("(c) 3 tables after", after.total_mb(), "MB"),
        Figure("(c) 3 tables after VACUUM", vacuumed.total_mb(), "MB"),
        Figure("(c) VACUUM", vacuum_seconds, "s"),
        Figure("(d) year 2: prune of a month, max", max(month_seconds), "s"),
        Figure("(d) year 2: prune_room p50", rooms2["p50"], "ms"),
        Figure("(d) year 2: prune_room p99", rooms2["p99"], "ms"),
        Figure("(d) rows after year 1", rows1, "rows"),
        Figure("(d) rows after year 2", rows2, "rows"),
        at_most("(d) rows after year 2 / year 1", rows2 / rows1, "x", TARGET_GROWTH),
        Figure("(d) largest in year 2", second.peak_mb, "MB"),
        Figure("(d) after year 2", final.total_mb(), "MB"),
        Figure("(d) MB after year 2 / year 1", final.total_mb() / vacuumed.total_mb(), "x"),
    ]
    result.notes = "; ".join(
        [
            f"{scale.retention_messages:,} messages a year in {len(year1.rooms):,} rooms "
            f"(10 to 90 messages, chats of 1 to 14 days, closed 1 h to 3 d after the last "
            f"message), each an inbox event (done), a chat-list row and a message.created "
            f"webhook (delivered; 1 in {DEAD_EVERY} dead); webhooks kept {WEBHOOKS_DAYS} days, "
            f"rooms {ROOMS_DAYS} days after their close",
            f"year 1 loaded (COPY, ANALYZE) in {load_seconds:.0f}s",
            f"year 1 loaded: {before.text()}",
            f"pruned: {after.text()}",
            f"after VACUUM ({vacuum_seconds:.1f}s): {vacuumed.text()}",
            f"prune_webhooks: {len(first.statements_ms)} DELETEs of up to {PRUNE_BATCH}, "
            f"ms each: {_spread(first.statements_ms)}",
            second.text(),
            f"after year 2 (VACUUM): {final.text()}",
            f"plans: {plans}",
            f"whole run {time.monotonic() - started:.0f}s",
        ]
    )
    return result


async def _second_year(
    env: Env,
    db: Database,
    conn: asyncpg.Connection,
    rng: random.Random,
    rooms: list[Room],
    pruned: set[int],
    year: Year,
    rows: int,
) -> SecondYear:
    """The year's messages loaded a month at a time on top of ``rows``, each month pruned at
    its end, then VACUUM (ANALYZE), as autovacuum would once a month's rows are deleted. Rows
    are counted as loaded and deleted (at the end, COUNT(*) must agree)."""
    second = SecondYear()
    said = iter(year.said)
    pending = next(said, None)
    for month in range(1, MONTHS + 1):
        month_end = year.start + YEAR * month // MONTHS
        batch = []
        while pending is not None and pending[0] < month_end:
            batch.append(pending)
            pending = next(said, None)
        loading = time.monotonic()
        await _load(conn, rng, rooms, batch)
        second.load_seconds += time.monotonic() - loading
        rows += len(TABLES) * len(batch)
        second.peak_rows = max(second.peak_rows, rows)
        second.peak_mb = max(second.peak_mb, await _total_mb(conn))
        done, cpu = await _metered(env, conn, _prune(db, rooms, pruned, month_end))
        rows -= done.webhooks + done.room_rows
        second.months.append(done)
        second.month_cpu.append(cpu)
        vacuuming = time.monotonic()
        await _vacuum(conn)
        second.vacuum_seconds += time.monotonic() - vacuuming
    second.final = await _snapshot(conn)
    if sum(second.final.rows.values()) != rows:
        raise RuntimeError(f"{second.final.rows} rows left, {rows} loaded and not pruned")
    return second


async def _metered(
    env: Env, conn: asyncpg.Connection, work: Coroutine[Any, Any, Prune]
) -> tuple[Prune, dict[str, float]]:
    """``work`` done; the CPU the driver, Synapse and the database's backends spent on it.

    The backends are sampled every SAMPLE_SECONDS (on ``conn``, not counted), as the bridge's
    pool may replace a connection meanwhile (one cut off mid-statement): one gone by the end
    counts to its last sample, one that came meanwhile from its start.
    """
    seen: dict[int, tuple[float, float]] = {}  # pid -> CPU seconds when first seen, latest

    async def sample(first: bool) -> None:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        for pid in (row["pid"] for row in rows):
            now = cpu_seconds(pid)  # 0 if it ended since the query
            since, last = seen.get(pid, (now if first else 0.0, 0.0))
            seen[pid] = (since, max(now, last))

    meter = env.meter()
    await sample(first=True)
    meter.start()
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=SAMPLE_SECONDS)
        await sample(first=False)
    cpu = meter.stop()
    cpu["postgres"] = round(sum(max(0.0, last - since) for since, last in seen.values()), 2)
    return task.result(), cpu


# --- the load ------------------------------------------------------------------------------


def _year(rng: random.Random, messages: int, start: int, first: int, tag: str) -> Year:
    """A year of rooms from ``start``: sizes summing to ``messages``, their messages sorted by
    time (room indexes from ``first``, the rooms loaded before)."""
    low, high = MESSAGES_PER_ROOM
    count = max(1, round(messages * 2 / (low + high)))
    sizes = [rng.randint(low, high) for _ in range(count)]
    missing = messages - sum(sizes)
    while missing:
        i = rng.randrange(count)
        step = 1 if missing > 0 else -1
        if sizes[i] + step >= 1:
            sizes[i] += step
            missing -= step
    users = [f"u{tag}{n:06d}" for n in range(max(2, count // 2))]  # about 4 deals each
    rooms, said = [], []
    for r, size in enumerate(sizes):
        length = rng.randint(DAY, 14 * DAY)
        opened = start + rng.randrange(YEAR - length)
        times = sorted(opened + rng.randrange(length) for _ in range(size))
        buyer, seller = rng.sample(users, 2)
        rooms.append(
            Room(
                f"!{''.join(rng.choices(string.ascii_letters, k=18))}:localhost",
                f"tx-{tag}{r:07d}",
                (buyer, f"@{buyer}:localhost"),
                (seller, f"@{seller}:localhost"),
                times[-1] + rng.randint(HOUR, 3 * DAY),
            )
        )
        said += [(ts, first + r, k) for k, ts in enumerate(times)]
    said.sort()
    return Year(start, rooms, said)


def _body_templates() -> dict[str, str]:
    """The message.created body the bridge makes, as format strings: the buyer's message
    and the seller's (two calls to the bridge's own code; a million would take half a
    minute)."""
    marks = {
        "room": "!ROOM",
        "tx": "TX-ID",
        "buyer": "BUYER-ID",
        "buyer_mx": "@BUYER:MX",
        "seller": "SELLER-ID",
        "seller_mx": "@SELLER:MX",
        "event": "$EVENT",
        "text": "TEXT-OF-IT",
    }
    buyer = Participant(marks["buyer"], marks["buyer_mx"], "buyer")
    seller = Participant(marks["seller"], marks["seller_mx"], "seller")
    context = RoomContext(marks["room"], RoomKind.TRANSACTION, marks["tx"], (buyer, seller), BOT)
    templates = {}
    for role, sender in (("buyer", buyer), ("seller", seller)):
        event = {
            "type": "m.room.message",
            "room_id": marks["room"],
            "sender": sender.matrix_id,
            "event_id": marks["event"],
            "origin_server_ts": 0,
            "content": {"msgtype": "m.text", "body": marks["text"]},
        }
        (notification,), _ = message_notifications(event, context)
        body = json.dumps(notification.body(), separators=(",", ":"), ensure_ascii=False)
        body = body.replace("{", "{{").replace("}", "}}")
        body = body.replace(notification.id, "{id}").replace("1970-01-01T00:00:00.000Z", "{at}")
        for name, mark in marks.items():
            if body.count(f'"{mark}"') != 1:
                raise RuntimeError(f"the webhook body's shape changed: {mark} in {body}")
            body = body.replace(f'"{mark}"', f'"{{{name}}}"')
        templates[role] = body
    return templates


async def _load(
    conn: asyncpg.Connection,
    rng: random.Random,
    rooms: list[Room],
    said: list[tuple[int, int, int]],
) -> None:
    """COPY the rows of ``said``, a chunk at a time; the next chunk's rows are made (in a
    thread, in order) while the server takes the last."""
    templates = _body_templates()
    chunks = [said[first : first + CHUNK] for first in range(0, len(said), CHUNK)]
    if not chunks:
        return
    making = asyncio.create_task(asyncio.to_thread(_rows, rng, rooms, chunks[0], templates))
    for n in range(len(chunks)):
        inbox, messages, outbox = await making
        if n + 1 < len(chunks):
            making = asyncio.create_task(
                asyncio.to_thread(_rows, rng, rooms, chunks[n + 1], templates)
            )
        await conn.copy_records_to_table("inbox_events", records=inbox, columns=INBOX_COLUMNS)
        await conn.copy_records_to_table("messages", records=messages, columns=MESSAGE_COLUMNS)
        await conn.copy_records_to_table("outbox", records=outbox, columns=OUTBOX_COLUMNS)


def _rows(
    rng: random.Random,
    rooms: list[Room],
    said: list[tuple[int, int, int]],
    templates: dict[str, str],
) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The rows the bridge leaves of these messages: inbox_events, messages, outbox."""
    inbox, messages, outbox = [], [], []
    for ts, r, k in said:
        room = rooms[r]
        role = "seller" if k % 3 == 1 else "buyer"  # the buyer writes a bit more
        sender_mx = room.seller[1] if role == "seller" else room.buyer[1]
        event_id = "$" + base64.urlsafe_b64encode(rng.randbytes(32)).decode()[:43]
        text = " ".join(rng.choices(_WORDS, k=rng.randint(4, 30)))
        received = ts + rng.randint(5, 50)
        inbox.append(
            (
                event_id,
                room.room_id,
                "m.room.message",
                sender_mx,
                ts,
                EVENT_JSON.format(
                    text=text,
                    event=event_id,
                    ts=ts,
                    room=room.room_id,
                    sender=sender_mx,
                    age=received - ts,
                ),
                "done",
                str(ts // 1000),
                received,
            )
        )
        messages.append((room.room_id, event_id, sender_mx, ts, text, False))
        created = received + rng.randint(5, 50)
        notification = notification_id("created", event_id)
        body = templates[role].format(
            id=notification,
            at=datetime.fromtimestamp(ts / 1000, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            room=room.room_id,
            tx=room.transaction_id,
            buyer=room.buyer[0],
            buyer_mx=room.buyer[1],
            seller=room.seller[0],
            seller_mx=room.seller[1],
            event=event_id,
            text=text,
        )
        if rng.randrange(DEAD_EVERY):
            delivered = created + rng.randint(200, 3000)
            row = ("delivered", 1, created, created + RETRY_FOR, delivered, delivered, None)
        else:  # retried for a day, given up
            row = ("dead", 17, created + RETRY_FOR, created + RETRY_FOR, 0, None, "HTTP 503")
        status, attempts, next_at, retry_until, lease, delivered_at, error = row
        outbox.append(
            (
                notification,
                room.room_id,
                "message.created",
                body,
                status,
                attempts,
                next_at,
                retry_until,
                lease,
                created,
                delivered_at,
                error,
            )
        )
    return inbox, messages, outbox


# --- pruning and measuring -----------------------------------------------------------------


async def _prune(db: Database, rooms: list[Room], pruned: set[int], now: int) -> Prune:
    """What the retention worker's drain does at ``now``: webhooks, then every room due."""
    done = Prune()
    started = time.perf_counter()
    done.webhooks = await prune_webhooks(
        TimedDatabase(db, done.statements_ms),  # type: ignore[arg-type]
        now - WEBHOOKS_DAYS * DAY,
    )
    done.webhook_seconds = time.perf_counter() - started
    due = [
        r
        for r, room in enumerate(rooms)
        if r not in pruned and room.closed_at < now - ROOMS_DAYS * DAY
    ]
    for r in due:
        started = time.perf_counter()
        async with db.acquire() as conn, conn.transaction():
            done.room_rows += await prune_room(conn, rooms[r].room_id)
        done.room_ms.append((time.perf_counter() - started) * 1000)
        pruned.add(r)
    done.rooms = len(due)
    return done


async def _snapshot(conn: asyncpg.Connection) -> Snapshot:
    rows, size = {}, {}
    for table in TABLES:
        rows[table] = await conn.fetchval(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        size[table] = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
    return Snapshot(rows, size)


async def _total_mb(conn: asyncpg.Connection) -> float:
    sizes = [
        await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        for table in TABLES
    ]
    return sum(sizes) / MB


async def _vacuum(conn: asyncpg.Connection) -> None:
    for table in TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")


async def _plans(conn: asyncpg.Connection, before: int) -> str:
    """prune_webhooks' first DELETE as planned with its values, and as the generic plan a
    prepared statement may switch to; prune_room's DELETE from inbox_events."""
    sql = (
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
        " WHERE status = 'delivered' AND delivered_at < $1 LIMIT $2)"
    )

    def text(rows: list) -> str:
        return " | ".join(" ".join(row[0].split()) for row in rows)

    custom = await conn.fetch(f"EXPLAIN (COSTS OFF) {sql}", before, PRUNE_BATCH)
    await conn.execute(f"PREPARE prune_now (BIGINT, BIGINT) AS {sql}")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        generic = await conn.fetch(
            f"EXPLAIN (COSTS OFF) EXECUTE prune_now ({before}, {PRUNE_BATCH})"
        )
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute("DEALLOCATE prune_now")
    room = await conn.fetch(
        "EXPLAIN (COSTS OFF) DELETE FROM inbox_events WHERE room_id = $1", "!x:localhost"
    )
    return (
        f"prune_webhooks, its values: {text(custom)}; generic: {text(generic)}; "
        f"prune_room, inbox_events: {text(room)}"
    )


def _check(before: Snapshot, after: Snapshot, first: Prune, messages: int) -> None:
    """Every message loaded, and what the prunes said they deleted really gone."""
    for table in TABLES:
        if before.rows[table] != messages:
            raise RuntimeError(f"{table} holds {before.rows[table]} rows, {messages} loaded")
    gone = sum(before.rows.values()) - sum(after.rows.values())
    if gone != first.webhooks + first.room_rows:
        raise RuntimeError(f"{gone} rows gone, the prunes said {first.webhooks + first.room_rows}")


def _spread(samples: list[float]) -> str:
    """The first and last four, and the median."""
    shown = samples if len(samples) <= 8 else [*samples[:4], None, *samples[-4:]]
    text = ", ".join("..." if s is None else f"{s:.0f}" for s in shown)
    return f"{text} (median {statistics.median(samples):.0f})" if samples else "none"

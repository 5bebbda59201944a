"""9. Follow-ups at scale: what the scheduler costs with 100,000 open transaction rooms.

On PostgreSQL, then on SQLite, each in a fresh database:

    follow_up_rooms paid transactions, each in a room of its own (users in about four each),
    with 1 to 5 messages (the chat list's rows), the last one unread by the other party; the
    inbox holds each room's events, done: its making (create, power levels, two joins), the
    messages and the moved read positions, about 9 a room; 0.6 % of the rooms have a newer
    message still pending in the inbox
    -> a copy of that database: the baseline, without follow-ups
    -> one pending follow-up a room, bulk-inserted: 1 % are unread reminders due minutes ago
       (a tenth of those in a room with a pending event: not due yet for the worker), the rest
       reminders and nudges due in 1 to 12 hours             -> the database's growth
    -> FollowUps.due(now, 100), the worker's poll, follow_up_queries times; the same call when
       nothing is due; baseline: one row by its primary key
    -> follow_up_messages replies in random rooms, each in a database transaction as the inbox
       worker makes it: records.cancel (the replier's reminder, nudge and escalation), then
       records.schedule (the other party's reminder; after the buyer's reply, the seller's
       nudge too); baseline: what that transaction writes for every message anyway (the chat
       list's row, the event marked done)
    -> the bridge process on the database with follow-ups until its worker has fired (or
       ended) every follow-up due at the start and the inbox and outbox are drained (webhooks
       to a receiver here): the rate it fired at; then the bridge on the copy without
       follow-ups for as long: the peak RSS (VmHWM) of each

None of the rooms exists in Synapse: both bridges' start-up reconcile (every room) is refused
room by room, alike; before a reminder the worker asks Synapse for the room's read receipts
(refused too) and then goes by those stored. The due query's plans (EXPLAIN on PostgreSQL with
the call's values and as a generic prepared plan; EXPLAIN QUERY PLAN on SQLite) are in the
notes. SQLite gets no ANALYZE (the bridge never runs one); PostgreSQL is analysed after the
bulk load, as autovacuum would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, closing
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import asyncpg
from mautrix.util.async_db import Database, Scheme
from yarl import URL

from bridge.config import Config
from bridge.deals import records
from bridge.deals.records import FollowUps
from bridge.storage.database import create_database, is_sqlite, start_database
from policy.follow_ups import FollowUpKind, Schedule
from tests.harness import BridgeProcess, postgres_server_url

from .cpu import peak_rss_mb
from .delivery import Receiver
from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends, merge_backends
from .report import Figure, Result, percentiles

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
BOT = "@marketbot:localhost"
CREATE = json.dumps({"room_version": "12", "creator": BOT}, separators=(",", ":"))
JOIN = '{"membership":"join"}'
UNREAD_AFTER = 10 * MINUTE  # config.example.yaml: reminders.unread_after
LATER = 12 * HOUR  # the not-yet-due ones: deals.nudge_after (reminders as if set so long)
DUE_EVERY = 100  # room n with n % 100 == 0: its follow-up is due (1 %)
PENDING_EVERY = 200  # n % 200 == 150: a newer event pending in the inbox
BLOCKED_EVERY = 1000  # n % 1000 == 0: due, but the room has an event pending in the inbox
BATCH = 100  # the worker's batch (bridge/deals/worker.py)
WARMUP = 20
ALL_KINDS = (FollowUpKind.UNREAD_REMINDER, FollowUpKind.NUDGE, FollowUpKind.ESCALATION)
# The wait for the worker to end every due follow-up: generous, still bounded.
DRAIN_MIN_SECONDS = 60.0
DRAIN_SLOWEST_RATE = 10.0  # follow-ups a second
SAMPLE_SECONDS = 0.25

TRANSACTION_COLUMNS = [
    *("transaction_id", "title", "buyer_id", "seller_id", "state", "room_id", "room_version"),
    *("created_at", "paid_at"),
]
INBOX_COLUMNS = [
    *("event_id", "room_id", "event_type", "sender", "origin_server_ts", "event_json"),
    *("status", "txn_id", "received_at"),
]

_WORDS = (
    "hi is it still available can you send the measurements I can come by tomorrow evening "
    "thanks paid just now please ship with tracking it arrived in great condition"
).split()


@dataclass(frozen=True, slots=True)
class Room:
    n: int
    room_id: str
    buyer: str  # Matrix IDs
    seller: str
    reader: str  # the party the last message waits for
    last_event: str
    pending: bool  # an event of the room waits in the inbox


@dataclass
class Seed:
    now: int  # the seeding's clock: what is due at it is "due"
    rooms: list[Room]
    due: int  # follow-ups due at `now`
    tables: dict[str, tuple[list[str], list[tuple]]]  # all but follow_ups, in insert order
    follow_ups: tuple[list[str], list[tuple]]


@dataclass
class Backend:
    """One database's pass: its prefix in the figures, the database and its baseline copy."""

    name: str  # "pg" or "sqlite"
    url: str
    base_url: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)


async def run(env: Env, scale: Scale) -> Result:
    result = Result("follow_ups")
    started = time.monotonic()
    seed = _generate(scale.follow_up_rooms)
    messages, inbox = (len(seed.tables[name][1]) for name in ("messages", "inbox_events"))
    notes = [
        f"{scale.follow_up_rooms} open rooms, {messages} messages, {inbox} inbox events "
        f"({sum(room.pending for room in seed.rooms)} pending), {scale.follow_up_rooms} pending "
        f"follow-ups ({seed.due} due; rows generated in {time.monotonic() - started:.1f}s); "
        f"{scale.follow_up_queries} due queries, {scale.follow_up_messages} messages"
    ]
    async with AsyncExitStack() as stack:
        pg = Backend("pg", await env.postgres(), "")
        sqlite = Backend("sqlite", env.sqlite("follow-ups.db"), env.sqlite("follow-ups-base.db"))
        for backend in (pg, sqlite):
            await _pass(env, scale, seed, backend, stack)
            result.figures += backend.figures
            result.cpu_seconds.update(backend.cpu)
            notes.append(f"{backend.name}: " + "; ".join(backend.notes))
    result.notes = ". ".join(notes)
    return result


async def _pass(
    env: Env, scale: Scale, seed: Seed, backend: Backend, stack: AsyncExitStack
) -> None:
    p, started = backend.name, time.monotonic()
    await _migrate(env, backend.url)
    if p == "pg":
        await _copy_into_postgres(backend.url, seed.tables, analyze=True)
        backend.base_url = await stack.enter_async_context(_postgres_copy(backend.url))
    else:
        await asyncio.to_thread(_insert_into_sqlite, backend.url, seed.tables)
        await asyncio.to_thread(_sqlite_copy, backend.url, backend.base_url)
    before = await _database_bytes(backend.url)
    if p == "pg":
        await _copy_into_postgres(backend.url, {"follow_ups": seed.follow_ups}, analyze=False)
    else:
        await asyncio.to_thread(_insert_into_sqlite, backend.url, {"follow_ups": seed.follow_ups})
    after = await _database_bytes(backend.url)
    if p == "pg":
        await _analyze(backend.url, "follow_ups")
    rows = len(seed.follow_ups[1])
    backend.notes.append(f"seeded in {time.monotonic() - started:.0f}s")
    backend.figures += [
        Figure(f"{p} follow_ups per 100,000", (after - before) * 100_000 / rows / 2**20, "MB"),
        Figure(f"{p} baseline: rest of database", before / 2**20, "MB"),
    ]
    await _measure_queries(env, scale, seed, backend)
    await _bridge_runs(env, seed, backend)


# --- the queries, in this process -----------------------------------------------------------


async def _measure_queries(env: Env, scale: Scale, seed: Seed, backend: Backend) -> None:
    p = backend.name
    config = env.bridge_config(backend.url)
    db = create_database(config.database)
    await start_database(db)
    pg_backends = DatabaseBackends(backend.url, config.database.max_connections)
    try:
        if p == "pg":
            await pg_backends.refresh()
        meter = env.meter(**(pg_backends.meters() if p == "pg" else {}))
        meter.start()
        await _due_query(scale, seed, db, backend)
        await _schedule_and_cancel(scale, seed, db, backend)
        if p == "pg":
            await pg_backends.refresh()
        cpu = merge_backends(meter.stop())
    finally:
        await db.stop()
    suffix = "" if p == "pg" else " (sqlite)"  # the judged names stay plain for the test
    backend.cpu.update({f"{name}{suffix}": seconds for name, seconds in cpu.items()})
    backend.notes.append(await _plans(backend.url, seed.now))


async def _due_query(scale: Scale, seed: Seed, db: Database, backend: Backend) -> None:
    follow_ups, p = FollowUps(db), backend.name
    now = int(time.time() * 1000)
    quiet = seed.now - HOUR  # an hour before the seeding, nothing was due

    async def timed(call: Callable[[], Awaitable[Any]]) -> list[float]:
        for _ in range(WARMUP):
            await call()
        samples = []
        for _ in range(scale.follow_up_queries):
            started = time.perf_counter()
            await call()
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    returned = len(await follow_ups.due(now, BATCH))
    eligible = sum(1 for room in seed.rooms if room.n % DUE_EVERY == 0 and not room.pending)
    if returned != min(BATCH, eligible):
        raise RuntimeError(f"the due query returned {returned} of {eligible} follow-ups")
    due = percentiles(await timed(lambda: follow_ups.due(now, BATCH)))
    none = percentiles(await timed(lambda: follow_ups.due(quiet, BATCH)))
    rng = random.Random(11)  # noqa: S311 (test data, not security)
    rows = len(seed.follow_ups[1])
    by_key = percentiles(
        await timed(
            lambda: db.fetchval("SELECT seq FROM follow_ups WHERE seq = $1", rng.randint(1, rows))
        )
    )
    backend.figures += [
        Figure(f"{p} due query p50", due["p50"], "ms"),
        Figure(f"{p} due query p99", due["p99"], "ms"),
        Figure(f"{p} due query, none due, p50", none["p50"], "ms"),
        Figure(f"{p} baseline: row by key p50", by_key["p50"], "ms"),
        Figure(f"{p} baseline: row by key p99", by_key["p99"], "ms"),
    ]
    backend.notes.append(
        f"the due query returned {returned} rows; none due p99 {none['p99']:.2f} ms"
    )


async def _schedule_and_cancel(scale: Scale, seed: Seed, db: Database, backend: Backend) -> None:
    """A reply in each of ``follow_up_messages`` random rooms, one database transaction each:
    the writes every message makes (baseline), then the follow-ups cancelled and scheduled."""
    p = backend.name
    rng = random.Random(12)  # noqa: S311 (test data, not security)
    quiet = [room for room in seed.rooms if room.n % DUE_EVERY and not room.pending]
    picked = rng.sample(quiet, min(scale.follow_up_messages, len(quiet)))
    seqs = [
        await db.fetchval("SELECT seq FROM inbox_events WHERE event_id = $1", room.last_event)
        for room in picked
    ]
    baseline, cancelled, scheduled = [], [], []
    for i, (room, seq) in enumerate(zip(picked, seqs, strict=True)):
        now = int(time.time() * 1000)
        replier = room.reader
        other = room.seller if replier == room.buyer else room.buyer
        event_id = _event_id(f"reply{i}")
        # Due an hour or more from now (not 10 minutes): none comes due in the bridge runs
        # that follow; when a row is due does not change what writing it costs.
        plans = [Schedule(FollowUpKind.UNREAD_REMINDER, other, now + HOUR)]
        if replier == room.buyer:
            plans.append(Schedule(FollowUpKind.NUDGE, room.seller, now + LATER))
        async with db.acquire() as conn, conn.transaction():
            t0 = time.perf_counter()
            await conn.execute(
                "INSERT INTO messages (room_id, event_id, sender, ts, preview)"
                " VALUES ($1, $2, $3, $4, $5)",
                room.room_id,
                event_id,
                replier,
                now,
                "sure, I can send them tonight",
            )
            await conn.execute("UPDATE inbox_events SET status = 'done' WHERE seq = $1", seq)
            t1 = time.perf_counter()
            await records.cancel(conn, room.room_id, replier, ALL_KINDS, now)
            t2 = time.perf_counter()
            await records.schedule(conn, room.room_id, event_id, now, plans, now)
            t3 = time.perf_counter()
        baseline.append((t1 - t0) * 1000)
        cancelled.append((t2 - t1) * 1000)
        scheduled.append((t3 - t2) * 1000)
    ended = await db.fetchval(
        "SELECT COUNT(*) FROM follow_ups WHERE status = 'cancelled' AND done_at >= $1", seed.now
    )
    if ended != len(picked):
        raise RuntimeError(f"{ended} follow-ups cancelled by {len(picked)} replies")
    s, c, b = percentiles(scheduled), percentiles(cancelled), percentiles(baseline)
    backend.figures += [
        Figure(f"{p} schedule p50", s["p50"], "ms"),
        Figure(f"{p} schedule p99", s["p99"], "ms"),
        Figure(f"{p} cancel p50", c["p50"], "ms"),
        Figure(f"{p} cancel p99", c["p99"], "ms"),
        Figure(f"{p} baseline: inbox writes p50", b["p50"], "ms"),
        Figure(f"{p} baseline: inbox writes p99", b["p99"], "ms"),
    ]


async def _plans(url: str, now: int) -> str:
    """The due query's plans, as the database makes them for it."""
    sql = await _due_sql(Scheme.SQLITE if is_sqlite(url) else Scheme.POSTGRES)
    if is_sqlite(url):
        with closing(sqlite3.connect(URL(url).path)) as conn:
            rows = conn.execute(
                "EXPLAIN QUERY PLAN " + re.sub(r"\$(\d+)", r"?\1", sql), (now, BATCH)
            ).fetchall()
        plan = " | ".join(row[3] for row in rows)
        return f"plan: {plan} (follow_ups_due used: {'follow_ups_due' in plan})"
    conn = await asyncpg.connect(url, timeout=10)
    try:
        custom = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, now, BATCH
        )
        await conn.execute(f"PREPARE due_now (BIGINT, BIGINT) AS {sql}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE due_now ({now}, {BATCH})")
    finally:
        await conn.close()

    def text(rows: list) -> str:
        return " | ".join(" ".join(row[0].split()) for row in rows)

    used = all("follow_ups_due" in text(plan) for plan in (custom, generic))
    return f"plan: {text(custom)}; generic plan: {text(generic)} (follow_ups_due used: {used})"


async def _due_sql(scheme: Scheme) -> str:
    """The SQL FollowUps.due sends on this database, taken from the call itself."""

    class Capture:
        sql = ""
        scheme: Scheme

        async def fetch(self, sql: str, *args: Any) -> list:
            self.sql = sql
            return []

    capture = Capture()
    capture.scheme = scheme
    await FollowUps(capture).due(0, 1)  # type: ignore[arg-type]
    return capture.sql


# --- the bridge process ------------------------------------------------------------------


async def _bridge_runs(env: Env, seed: Seed, backend: Backend) -> None:
    """The bridge until its worker has ended every due follow-up, then the bridge on the copy
    without follow-ups for as long; the peak RSS of each."""
    p = backend.name
    receiver = Receiver()
    await receiver.start()
    try:
        config = env.bridge_config(backend.url, webhooks={"url": receiver.url})
        # Drained: every follow-up due at the start ended, the inbox processed, the outbox
        # delivered (the reminders' webhooks arrived).
        left = _counter(
            backend.url,
            "SELECT (SELECT COUNT(*) FROM follow_ups WHERE status = 'pending' AND due_at <= $1)"
            " + (SELECT COUNT(*) FROM inbox_events WHERE status = 'pending')"
            " + (SELECT COUNT(*) FROM outbox WHERE status = 'pending')",
            seed.now,
        )
        deadline = max(DRAIN_MIN_SECONDS, seed.due / DRAIN_SLOWEST_RATE)
        drained, peak, cpu, launched = await _bridge_run(env, config, left, deadline)
        arrived = sum(receiver.arrivals.values())
        ended = await _fetch(
            backend.url,
            "SELECT status, COUNT(*), MIN(done_at), MAX(done_at) FROM follow_ups"
            " WHERE due_at <= $1 GROUP BY status",
            seed.now,
        )
        base_config = env.bridge_config(backend.base_url, webhooks={"url": receiver.url})
        _, base_peak, base_cpu, _ = await _bridge_run(env, base_config, None, drained)
    finally:
        await receiver.stop()
    first, last = min(row[2] for row in ended), max(row[3] for row in ended)
    fired_for = max(last - first, 1) / 1000
    backend.figures += [
        Figure(f"{p} peak RSS, worker draining", peak, "MB"),
        Figure(f"{p} baseline: peak RSS, none", base_peak, "MB"),
        Figure(f"{p} due follow-ups fired/s", seed.due / fired_for, "/s"),
    ]
    backend.cpu.update({f"{k} ({p}, draining)": v for k, v in cpu.items()})
    backend.cpu.update({f"{k} ({p}, baseline)": v for k, v in base_cpu.items()})
    statuses = ", ".join(f"{row[0]} {row[1]}" for row in sorted(ended))
    backend.notes.append(
        f"the {seed.due} due follow-ups ended ({statuses}) from {(first - launched) / 1000:.1f}s"
        f" to {(last - launched) / 1000:.1f}s after the bridge's launch; all drained (inbox and"
        f" outbox too) at {drained:.1f}s, {arrived} webhooks received"
    )


async def _bridge_run(
    env: Env,
    config: Config,
    left: Callable[[], Awaitable[int]] | None,
    seconds: float,
) -> tuple[float, float, dict[str, float], int]:
    """Launch the bridge; until ``left()`` is 0 (within ``seconds``), or for ``seconds`` when
    there is no ``left``: (seconds from the launch, peak RSS, CPU seconds, the launch in ms)."""
    process = BridgeProcess(config, env.workdir)
    pg_backends = None
    if not is_sqlite(config.database.url):
        pg_backends = DatabaseBackends(config.database.url, config.database.max_connections)
    meter = env.meter(
        bridge=lambda: process.process.pid if process.process else None,
        **(pg_backends.meters() if pg_backends else {}),
    )
    try:
        meter.start()
        launched, launched_ms = time.monotonic(), int(time.time() * 1000)
        await process.start()
        assert process.process is not None
        pid = process.process.pid
        while True:
            elapsed = time.monotonic() - launched
            if left is not None and await left() == 0:
                break
            if elapsed >= seconds:
                if left is None:
                    break
                raise TimeoutError(f"due follow-ups left after {seconds:.0f}s:\n{process.log()}")
            if process.process.poll() is not None:
                raise RuntimeError(f"the bridge stopped:\n{process.log()}")
            await asyncio.sleep(SAMPLE_SECONDS)
        peak = peak_rss_mb(pid)
        if pg_backends is not None:
            await pg_backends.refresh()
        cpu = merge_backends(meter.stop())
    finally:
        await asyncio.to_thread(_stop, process)
    return elapsed, peak, cpu, launched_ms


def _stop(process: BridgeProcess) -> None:
    """SIGTERM and wait; SIGKILL if it will not stop."""
    if process.process is None or process.process.poll() is not None:
        return
    try:
        process.kill(signal.SIGTERM)
    except subprocess.TimeoutExpired:
        process.kill(signal.SIGKILL)


def _counter(url: str, sql: str, *args: Any) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        rows = await _fetch(url, sql, *args)
        return rows[0][0]

    return count


async def _fetch(url: str, sql: str, *args: Any) -> list[tuple]:
    """A query on a connection of its own (not the bridge's)."""
    if is_sqlite(url):
        with closing(sqlite3.connect(URL(url).path, timeout=10)) as conn:
            return conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args).fetchall()
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


# --- the databases -------------------------------------------------------------------------


async def _migrate(env: Env, url: str) -> None:
    db = create_database(env.bridge_config(url).database)
    await start_database(db)  # the schema, as the bridge makes it
    await db.stop()


async def _copy_into_postgres(
    url: str, tables: dict[str, tuple[list[str], list[tuple]]], *, analyze: bool
) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for table, (columns, rows) in tables.items():
            await conn.copy_records_to_table(table, records=rows, columns=columns)
        if analyze:  # what autovacuum does to a long-lived database
            await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _analyze(url: str, table: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()


def _insert_into_sqlite(url: str, tables: dict[str, tuple[list[str], list[tuple]]]) -> None:
    with closing(sqlite3.connect(URL(url).path)) as conn:
        for table, (columns, rows) in tables.items():
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                rows,
            )
        conn.commit()


def _sqlite_copy(url: str, copy_url: str) -> None:
    with (
        closing(sqlite3.connect(URL(url).path)) as source,
        closing(sqlite3.connect(URL(copy_url).path)) as copy,
    ):
        source.backup(copy)


@asynccontextmanager
async def _postgres_copy(url: str) -> AsyncIterator[str]:
    """A copy of the database (CREATE DATABASE ... TEMPLATE), dropped afterwards."""
    name = URL(url).path.lstrip("/")
    copy = f"{name}_base"
    admin = await asyncpg.connect(postgres_server_url(), timeout=10)
    try:
        for attempt in range(50):  # the seeding's connection may still be closing
            try:
                await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
                break
            except asyncpg.ObjectInUseError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        yield str(URL(url).with_path(f"/{copy}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        await admin.close()


async def _database_bytes(url: str) -> int:
    if is_sqlite(url):
        rows = await _fetch(
            url, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
        )
    else:
        rows = await _fetch(url, "SELECT pg_database_size(current_database())")
    return int(rows[0][0])


# --- the rows ------------------------------------------------------------------------------


def _generate(count: int) -> Seed:
    """Every table's rows for ``count`` open rooms (see the module's docstring)."""
    rng = random.Random(9)  # noqa: S311 (test data, not security)
    now = int(time.time() * 1000)
    users = [f"u{k:06d}" for k in range(max(2, count // 2))]  # about 4 deals each
    transactions, messages, inbox, reads, exchanges, follow_ups = [], [], [], [], [], []
    rooms, due = [], 0
    for n in range(count):
        buyer_id, seller_id = rng.sample(users, 2)
        buyer, seller = _mxid(buyer_id), _mxid(seller_id)
        room_id = f"!{_token(f'room{n}', 18)}:localhost"
        transaction_id = f"fu-{n:07d}"
        created = now - 30 * DAY + rng.randint(0, 20 * DAY)
        parties = (buyer_id, seller_id)
        paid = created + HOUR
        transactions.append(
            (transaction_id, f"Item {n}", *parties, "paid", room_id, "12", created, paid)
        )
        is_due = n % DUE_EVERY == 0
        if is_due:  # its reminder came due 1 to 9 minutes ago
            last_ts = now - UNREAD_AFTER - rng.randint(1, 9) * MINUTE
        else:  # its follow-up comes due in 1 to 12 hours
            last_ts = now - rng.randint(0, 11 * 60) * MINUTE
        said = 1 + n % 5
        first_ts = last_ts - (said - 1) * 2 * MINUTE
        row = partial(_inbox_row, room_id, txn_id=f"seed-{n}")
        # The room's making, as the homeserver pushes it: created and its power levels set by
        # the bot, then both parties join.
        for k, (kind, sender, key, content) in enumerate(
            (
                ("m.room.create", BOT, "", CREATE),
                ("m.room.power_levels", BOT, "", _power_levels(buyer, seller)),
                ("m.room.member", buyer, buyer, JOIN),
                ("m.room.member", seller, seller, JOIN),
            )
        ):
            event_id, ts = _event_id(f"{n}:s{k}"), first_ts - HOUR + k
            inbox.append(row(event_id, sender, ts, kind, content, state_key=key))
        events = []
        for k in range(said):  # the buyer first, then in turn
            sender = buyer if k % 2 == 0 else seller
            ts = first_ts + k * 2 * MINUTE
            event_id = _event_id(f"{n}:{k}")
            body = " ".join(rng.choices(_WORDS, k=rng.randint(5, 25)))
            events.append((event_id, sender, ts))
            messages.append((room_id, event_id, sender, ts, body, False))
            inbox.append(row(event_id, sender, ts, "m.room.message", _message(body)))
        last_event, last_sender, last_ts = events[-1]
        reader = seller if last_sender == buyer else buyer
        read = [(last_sender, events[-1])]
        if said > 1:  # the reader read up to the message before
            read.append((reader, events[-2]))
        for user, (event_id, _, ts) in read:
            reads.append((room_id, user, event_id, ts, ts))
            inbox.append(_receipt_row(room_id, user, event_id, ts, f"seed-{n}"))
        pending = n % PENDING_EVERY == PENDING_EVERY * 3 // 4 or n % BLOCKED_EVERY == 0
        if pending:  # one more message of the burst, stored, not yet processed
            event_id, ts = _event_id(f"{n}:pending"), now - 30_000
            message = _message("hello?")
            inbox.append(
                row(event_id, last_sender, ts, "m.room.message", message, status="pending")
            )
        if reader == seller:  # the buyer waits for the seller's first reply
            exchanges.append((room_id, transaction_id, seller, "seller", last_event, last_ts))
        if is_due:
            kind, due_at = FollowUpKind.UNREAD_REMINDER, last_ts + UNREAD_AFTER
            due += 1
        elif reader == seller and n % 2:
            kind, due_at = FollowUpKind.NUDGE, last_ts + LATER
        else:
            kind, due_at = FollowUpKind.UNREAD_REMINDER, last_ts + LATER
        follow_ups.append((kind.value, room_id, reader, last_event, last_ts, due_at, last_ts))
        rooms.append(Room(n, room_id, buyer, seller, reader, last_event, pending))
    tables = {
        "marketplace_users": (
            ["user_id", "matrix_id", "created_at"],
            [(user, _mxid(user), now - 60 * DAY) for user in users],
        ),
        "transactions": (
            TRANSACTION_COLUMNS,
            transactions,
        ),
        "messages": (["room_id", "event_id", "sender", "ts", "preview", "deleted"], messages),
        "inbox_events": (
            INBOX_COLUMNS,
            inbox,
        ),
        "read_positions": (["room_id", "user_id", "event_id", "ts", "updated_at"], reads),
        "exchanges": (
            ["room_id", "transaction_id", "responder", "role", "event_id", "started_at"],
            exchanges,
        ),
    }
    columns = ["kind", "room_id", "user_id", "event_id", "started_at", "due_at", "created_at"]
    return Seed(now, rooms, due, tables, (columns, follow_ups))


def _inbox_row(
    room_id: str,
    event_id: str,
    sender: str,
    ts: int,
    kind: str,
    content: str,
    *,
    txn_id: str,
    state_key: str | None = None,
    status: str = "done",
) -> tuple:
    """An event as the inbox stores it: its JSON as the homeserver sends it (``content``
    already JSON; ids and types need no escaping)."""
    state = "" if state_key is None else f',"state_key":"{state_key}"'
    text = (
        f'{{"type":"{kind}","room_id":"{room_id}","sender":"{sender}","event_id":"{event_id}",'
        f'"origin_server_ts":{ts}{state},"content":{content},"unsigned":{{"age":42}}}}'
    )
    return (event_id, room_id, kind, sender, ts, text, status, txn_id, ts + 40)


def _receipt_row(room_id: str, user: str, event_id: str, ts: int, txn_id: str) -> tuple:
    """A moved read position, as the inbox queues it (bridge/homeserver/inbox.py)."""
    key = hashlib.sha256(f"{room_id}\x00{user}\x00{event_id}".encode()).hexdigest()[:32]
    text = json.dumps({"type": "m.receipt", "event_id": event_id, "ts": ts})
    return (f"receipt:{key}", room_id, "m.receipt", user, ts, text, "done", txn_id, ts + 40)


def _message(body: str) -> str:
    return json.dumps({"msgtype": "m.text", "body": body}, separators=(",", ":"))


def _power_levels(buyer: str, seller: str) -> str:
    levels = {
        "users": {BOT: 100, buyer: 0, seller: 0},
        "users_default": 0,
        "events": {"m.room.name": 100, "m.room.power_levels": 100, "m.room.topic": 100},
        "events_default": 0,
        "state_default": 100,
        "ban": 100,
        "kick": 100,
        "redact": 50,
        "invite": 100,
    }
    return json.dumps(levels, separators=(",", ":"))


def _token(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


def _event_id(text: str) -> str:
    return "$" + _token(text, 43)


def _mxid(user: str) -> str:
    return f"@{user}:localhost"

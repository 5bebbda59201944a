"""Scale and memory: API lookups over many seeded transactions, and the bridge's peak memory
with many active rooms.

(a) lookups: seeded_transactions transactions (users in about four each, all states, chat
    previews) are copied straight into a fresh PostgreSQL database; the real bridge process
    starts on it, and once its start-up reconcile is over (steady state), one client times
    sequential calls:

        seed (COPY) -> bridge process starts -> reconcile every room -> "Compared N rooms"
        -> GET /api/v1/transactions/{id}     x lookups, random ids
        -> GET /api/v1/users/{id}/rooms      x lookups, random users (the chat list)

(b) memory: active_rooms paid transactions in a second fresh database; the bridge starts and
    reconciles every room against Synapse, where none of these rooms exists, so each is
    refused at once and logged: start-up's whole loop over the rooms with little else. Its
    peak RSS (VmHWM) is read once the log says the reconcile is over.

Both bridges log at INFO, as the end of the reconcile is an INFO line.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import ClientSession, ClientTimeout

from bridge.config import Config
from bridge.storage.database import create_database, start_database
from tests.harness import BridgeProcess

from .cpu import peak_rss_mb
from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends, merge_backends
from .report import Figure, Result, at_most, percentiles

TARGET_LOOKUP_MS = 10
TARGET_PEAK_RSS_MB = 150
WARMUP_CALLS = 20
# The start-up reconcile makes a few queries and one homeserver call per room; these bound
# the wait for it generously (seconds, and rooms a second at the slowest).
RECONCILE_MIN_SECONDS = 60.0
RECONCILE_SLOWEST_RATE = 100.0
STOP_SECONDS = 30
COMPARED = re.compile(rb"Compared (\d+) rooms with their plans")

_TITLES = (
    "Vintage road bike",
    "Oak dining table with four chairs",
    "Children's winter jacket, size 128",
    "Espresso machine, barely used",
    "Set of 12 sci-fi paperbacks",
    "Leather sofa (pick-up only)",
    "Canon 50mm f/1.8 lens",
    "Wooden train set",
)
_WORDS = (
    "hi is it still available can you send the measurements I can come by tomorrow evening "
    "thanks paid just now please ship with tracking it arrived in great condition"
).split()


@dataclass(frozen=True, slots=True)
class Seeded:
    transaction_ids: list[str]
    parties: list[tuple[str, str]]  # each transaction's (buyer, seller) user ids


async def run(env: Env, scale: Scale) -> Result:
    result = Result("scale")
    await _lookups(env, scale, result)
    await _memory(env, scale, result)
    result.notes = (
        f"(a) {scale.seeded_transactions} seeded transactions, {scale.lookups} sequential "
        f"calls of each kind after the start-up reconcile; (b) {scale.active_rooms} active "
        "rooms, none of them in Synapse"
    )
    return result


async def _lookups(env: Env, scale: Scale, result: Result) -> None:
    database_url = await env.postgres()
    config = env.bridge_config(database_url, logging={"level": "INFO"})
    seeded = await _seed(config, scale.seeded_transactions, active_only=False)
    process = BridgeProcess(config, env.workdir)
    try:
        reconciled = await _start_and_reconcile(process, scale.seeded_transactions)
        pid = _pid(process)
        result.figures.append(Figure("(a) start-up reconcile", reconciled, "s"))
        result.figures.append(Figure("(a) peak RSS", peak_rss_mb(pid), "MB"))
        rng = random.Random(6)  # noqa: S311 (test data, not security)
        token = config.api.token.get_secret_value()
        async with ClientSession(
            base_url=process.url(""),
            headers={"Authorization": f"Bearer {token}"},
            timeout=ClientTimeout(total=30),
        ) as session:
            transactions = [
                f"/api/v1/transactions/{rng.choice(seeded.transaction_ids)}"
                for _ in range(WARMUP_CALLS + scale.lookups)
            ]
            # Users as often as they trade: a random transaction's buyer or seller.
            chat_lists = [
                f"/api/v1/users/{rng.choice(rng.choice(seeded.parties))}/rooms"
                for _ in range(WARMUP_CALLS + scale.lookups)
            ]
            for path in transactions[:WARMUP_CALLS] + chat_lists[:WARMUP_CALLS]:
                await _timed_get(session, path)
            backends = DatabaseBackends(config.database.url, config.database.max_connections)
            await backends.refresh()
            meter = env.meter(bridge=lambda: pid, **backends.meters())
            meter.start()
            by_id = [await _timed_get(session, path) for path in transactions[WARMUP_CALLS:]]
            chats = [await _timed_get(session, path) for path in chat_lists[WARMUP_CALLS:]]
            await backends.refresh()
            result.cpu_seconds.update(merge_backends(meter.stop()))
    finally:
        await asyncio.to_thread(_stop, process)
    by_id_ms, chats_ms = percentiles(by_id), percentiles(chats)
    result.figures[:0] = [
        Figure("GET transaction p50", by_id_ms["p50"], "ms"),
        at_most("GET transaction p99", by_id_ms["p99"], "ms", TARGET_LOOKUP_MS),
        Figure("GET chat list p50", chats_ms["p50"], "ms"),
        at_most("GET chat list p99", chats_ms["p99"], "ms", TARGET_LOOKUP_MS),
    ]


async def _memory(env: Env, scale: Scale, result: Result) -> None:
    database_url = await env.postgres()
    config = env.bridge_config(database_url, logging={"level": "INFO"})
    await _seed(config, scale.active_rooms, active_only=True)
    process = BridgeProcess(config, env.workdir)
    backends = DatabaseBackends(config.database.url, config.database.max_connections)
    # Started before the launch: the bridge's whole start-up is counted.
    meter = env.meter(
        bridge=lambda: process.process.pid if process.process else None, **backends.meters()
    )
    try:
        meter.start()
        reconciled = await _start_and_reconcile(process, scale.active_rooms)
        peak = peak_rss_mb(_pid(process))
        await backends.refresh()
        for name, seconds in merge_backends(meter.stop()).items():
            result.cpu_seconds[f"{name} (start-up, b)"] = seconds
    finally:
        await asyncio.to_thread(_stop, process)
    result.figures += [
        at_most("(b) peak RSS", peak, "MB", TARGET_PEAK_RSS_MB),
        Figure("(b) start-up reconcile", reconciled, "s"),
    ]


async def _start_and_reconcile(process: BridgeProcess, rooms: int) -> float:
    """Start the bridge; seconds from its launch until its start-up reconcile logged its end."""
    offset = process.log_path.stat().st_size if process.log_path.exists() else 0
    launched = time.monotonic()
    await process.start()
    deadline = launched + max(RECONCILE_MIN_SECONDS, rooms / RECONCILE_SLOWEST_RATE)
    for line in _log_lines(process.log_path, offset):
        if line is None:  # nothing new yet
            if process.process is None or process.process.poll() is not None:
                raise RuntimeError(f"the bridge stopped during start-up:\n{process.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no end of the start-up reconcile:\n{process.log()}")
            await asyncio.sleep(0.1)
        elif (found := COMPARED.search(line)) is not None:
            elapsed = time.monotonic() - launched
            if int(found.group(1)) < rooms:
                raise RuntimeError(f"the reconcile compared {found.group(1)} of {rooms} rooms")
            return elapsed
    raise AssertionError("unreachable")


def _log_lines(path: Path, offset: int) -> Iterator[bytes | None]:
    """The log's complete lines from ``offset`` on, as they are written; None when none yet."""
    partial = b""
    while True:
        with path.open("rb") as log:
            log.seek(offset)
            chunk = log.read()
        offset += len(chunk)
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        yield from lines
        if not lines:
            yield None


async def _timed_get(session: ClientSession, path: str) -> float:
    """Milliseconds from sending the request to having read the whole answer."""
    started = time.perf_counter()
    async with session.get(path) as response:
        body = await response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
    return elapsed


def _pid(process: BridgeProcess) -> int:
    assert process.process is not None, "the bridge was not launched"
    return process.process.pid


def _stop(process: BridgeProcess) -> None:
    """SIGTERM and wait; SIGKILL if it will not stop."""
    if process.process is None or process.process.poll() is not None:
        return
    try:
        process.kill(signal.SIGTERM)
    except subprocess.TimeoutExpired:
        process.kill(signal.SIGKILL)


# --- seeding ------------------------------------------------------------------------------


async def _seed(config: Config, transactions: int, *, active_only: bool) -> Seeded:
    """Migrate, then COPY users, transactions, chat messages and read positions in.

    ``active_only``: every transaction paid and not closed (rooms ``!active<n>``), no
    messages; else a marketplace's mix of states over a year (rooms ``!seed<n>``).
    """
    db = create_database(config.database)
    await start_database(db)  # the schema, as the bridge makes it
    await db.stop()
    rng = random.Random(7 if active_only else 8)  # noqa: S311 (test data, not security)
    users = [f"u{n:06d}" for n in range(max(2, transactions // 2))]  # about 4 deals each
    now = int(time.time() * 1000)
    year = 365 * 86_400_000
    rows, messages, reads, parties = [], [], [], []
    for n in range(transactions):
        buyer, seller = rng.sample(users, 2)
        parties.append((buyer, seller))
        created = now - year + year * n // transactions
        state, outcome, paid, closed = _state(n, created, active_only)
        room = f"!{'active' if active_only else 'seed'}{n}:localhost"
        tx, title = f"tx-{n:07d}", rng.choice(_TITLES)
        rows.append((tx, title, buyer, seller, state, outcome, room, "12", created, paid, closed))
        if active_only:
            continue
        said = [
            (
                room,
                f"$seed{n}m{k}",
                _mxid(buyer if k % 2 else seller),
                created + k * 60_000,
                " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 25))),
            )
            for k in range(n % 5)  # 0 to 4 messages: 2 a room on average
        ]
        messages += [(*message, False) for message in said]
        if said:  # the buyer read the first one
            reads.append((room, _mxid(buyer), said[0][1], said[0][3], said[0][3]))
    connection = await asyncpg.connect(config.database.url, timeout=10)
    try:
        await connection.copy_records_to_table(
            "marketplace_users",
            records=[(user, _mxid(user), now - year) for user in users],
            columns=["user_id", "matrix_id", "created_at"],
        )
        await connection.copy_records_to_table(
            "transactions",
            records=rows,
            columns=[
                "transaction_id",
                "title",
                "buyer_id",
                "seller_id",
                "state",
                "outcome",
                "room_id",
                "room_version",
                "created_at",
                "paid_at",
                "closed_at",
            ],
        )
        await connection.copy_records_to_table(
            "messages",
            records=messages,
            columns=["room_id", "event_id", "sender", "ts", "preview", "deleted"],
        )
        await connection.copy_records_to_table(
            "read_positions",
            records=reads,
            columns=["room_id", "user_id", "event_id", "ts", "updated_at"],
        )
        # What autovacuum does to a long-lived database; a bulk load has no statistics yet.
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return Seeded([row[0] for row in rows], parties)


def _state(n: int, created: int, active_only: bool) -> tuple:
    """(state, outcome, paid_at, closed_at): 60 % closed, 25 % paid, 15 % awaiting payment."""
    hour, days = 3_600_000, 3 * 86_400_000
    if active_only or 12 <= n % 20 < 17:
        return "paid", None, created + hour, None
    if n % 20 >= 17:
        return "awaiting_payment", None, None, None
    outcome = ("completed", "completed", "completed", "cancelled", "refunded")[n % 5]
    paid = None if outcome == "cancelled" else created + hour
    return "closed", outcome, paid, created + days


def _mxid(user: str) -> str:
    return f"@{user}:localhost"

"""Scale and memory: a restart over many rooms, API lookups over many more transactions, and
the bridge's peak memory with many active rooms.

(a) restart: seeded_transactions transactions (users in about four each, all states, chat
    previews) are copied into a fresh PostgreSQL database; the bridge process starts and,
    having no completed reconcile to start from, compares every room (none of them exists in
    Synapse, so each is refused at once). It is stopped (SIGTERM), restart_changes rooms
    change while it is down (half of the transactions closed, half with a membership event
    stored), and it starts again:

        launch -> GET /health 200 and GET /api/v1/transactions/{id} 200 ("API ready after")
               -> "Compared N rooms with their plans (changed)": N is what changed
        Synapse's CPU from the launch to that line ("Synapse CPU of a clean restart")

(c) lookups: lookup_transactions more in a second database, marked reconciled (as a bridge
    that ran before leaves it); the bridge starts on it, and one client times sequential
    calls, round-robin so each kind sees the same conditions:

        GET /health  (the baseline: the same server and middleware; it reads nothing)
        GET /api/v1/transactions/{id}        random ids
        GET /api/v1/users/{id}/rooms         random users (the chat list)

(b) memory: active_rooms paid transactions in a third database; the bridge starts and
    compares every room against Synapse, where none exists; its peak RSS (VmHWM) is read once
    the log says the reconcile is over.

The bridges log at INFO, as the end of a reconcile is an INFO line.
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
from aiohttp import ClientError, ClientSession, ClientTimeout

from bridge.config import Config
from bridge.market.reconcile import plan_fingerprint
from bridge.storage.database import create_database, start_database
from tests.harness import BridgeProcess

from .cpu import peak_rss_mb
from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends, merge_backends
from .report import Figure, Result, at_most, percentiles

TARGET_BASELINE_RATIO = 3.0  # a lookup's p99 against GET /health's, same server and run
LOOKUP_UNDER_MS = 2  # reported, as on the recorded machine
TARGET_API_READY_SECONDS = 2.0
TARGET_PEAK_RSS_MB = 150
SEED_CHUNK = 50_000
WARMUP_CALLS = 20
# The start-up reconcile makes a few queries and one homeserver call per room; these bound
# the wait for it generously (seconds, and rooms a second at the slowest).
RECONCILE_MIN_SECONDS = 60.0
RECONCILE_SLOWEST_RATE = 100.0
STOP_SECONDS = 30
COMPARED = re.compile(rb"Compared (\d+) rooms with their plans")
COMPARED_CHANGED = re.compile(rb"Compared (\d+) rooms with their plans \(changed\)")

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
    states: list[str]


async def run(env: Env, scale: Scale) -> Result:
    result = Result("scale")
    await _restart(env, scale, result)
    await _lookups(env, scale, result)
    await _memory(env, scale, result)
    result.notes = (
        f"(a) {scale.seeded_transactions} seeded transactions, {scale.restart_changes} changed "
        f"while the bridge was stopped; (c) {scale.lookup_transactions} seeded transactions, "
        f"{scale.lookups} sequential calls of each kind, round-robin; (b) {scale.active_rooms} "
        "active rooms, none of them in Synapse"
    )
    return result


async def _restart(env: Env, scale: Scale, result: Result) -> None:
    database_url = await env.postgres()
    config = env.bridge_config(database_url, logging={"level": "INFO"})
    seeded = await _seed(config, scale.seeded_transactions, active_only=False)
    process = BridgeProcess(config, env.workdir)
    meter = env.meter(bridge=lambda: process.process.pid if process.process else None)
    try:
        meter.start()
        full = await _start_and_reconcile(process, scale.seeded_transactions)
        first = meter.stop()
        result.figures.append(Figure("(a) first start: every room compared", full, "s"))
        result.figures.append(Figure("(a) peak RSS", peak_rss_mb(_pid(process)), "MB"))
        await asyncio.to_thread(_stop, process)
        changed = await _change_while_stopped(config, seeded, scale.restart_changes)
        meter.start()
        ready, listening, reconciled, compared = await _restart_and_time(process, seeded)
        again = meter.stop()
    finally:
        await asyncio.to_thread(_stop, process)
    if compared < changed:
        raise RuntimeError(f"the restart compared {compared} rooms, {changed} changed")
    result.figures += [
        at_most("(a) restart: API ready after", ready, "s", TARGET_API_READY_SECONDS),
        Figure("(a) restart: first answer after (process start)", listening, "s"),
        Figure("(a) restart: rooms compared", compared, "rooms"),
        Figure("(a) restart: its reconcile done after", reconciled, "s"),
        Figure("(a) restart: Synapse CPU", again.get("synapse", 0.0), "s"),
        Figure("(a) first start: Synapse CPU", first.get("synapse", 0.0), "s"),
    ]
    for name, seconds in again.items():
        result.cpu_seconds[f"{name} (restart, a)"] = seconds


async def _change_while_stopped(config: Config, seeded: Seeded, count: int) -> int:
    """While the bridge is down: half of ``count`` transactions closed (as another process
    whose room update failed would leave them), half of the rooms with a membership event
    stored (as the homeserver's push stores it). The number of rooms changed."""
    now = int(time.time() * 1000)
    paid = zip(seeded.transaction_ids, seeded.states, strict=True)
    closed = [t for t, state in paid if state == "paid"][: count // 2]
    joined = seeded.transaction_ids[-(count - len(closed)) :]
    connection = await asyncpg.connect(config.database.url, timeout=10)
    try:
        await connection.execute(
            "UPDATE transactions SET state = 'closed', outcome = 'completed', closed_at = $2,"
            " changed_at = $2 WHERE transaction_id = ANY($1::text[])",
            closed,
            now,
        )
        await connection.executemany(
            "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
            " event_json, status, txn_id, received_at) SELECT $1, room_id, 'm.room.member',"
            " '@stranger:localhost', $2, '{}', 'done', 'bench', $2 FROM transactions"
            " WHERE transaction_id = $3",
            [(f"$join-{t}", now, t) for t in joined],
        )
    finally:
        await connection.close()
    return len(set(closed) | set(joined))


async def _restart_and_time(
    process: BridgeProcess, seeded: Seeded
) -> tuple[float, float, float, int]:
    """Launch the stopped bridge again: (seconds until GET /health and a GET transaction
    both answered 200, until it first answered anything (the interpreter's start, imports,
    opening the database), until its start-up reconcile logged its end; rooms compared)."""
    offset = process.log_path.stat().st_size
    launched = time.monotonic()
    process.launch()
    token = process.config.api.token.get_secret_value()
    ready = listening = None
    async with ClientSession(
        base_url=process.url(""),
        headers={"Authorization": f"Bearer {token}"},
        timeout=ClientTimeout(total=10),
    ) as session:
        path = f"/api/v1/transactions/{seeded.transaction_ids[0]}"
        while ready is None:
            if process.process is None or process.process.poll() is not None:
                raise RuntimeError(f"the bridge stopped during start-up:\n{process.log()}")
            if time.monotonic() - launched > RECONCILE_MIN_SECONDS:
                raise TimeoutError(f"the API never answered:\n{process.log()}")
            try:
                async with session.get("/health") as health, session.get(path) as lookup:
                    listening = listening or time.monotonic() - launched
                    if health.status == lookup.status == 200:
                        ready = time.monotonic() - launched
            except ClientError:
                pass  # not listening yet
            if ready is None:
                await asyncio.sleep(0.02)
    for line in _log_lines(process.log_path, offset):
        if line is None:
            if time.monotonic() - launched > RECONCILE_MIN_SECONDS:
                raise TimeoutError(f"no end of the restart's reconcile:\n{process.log()}")
            await asyncio.sleep(0.05)
        elif (found := COMPARED_CHANGED.search(line)) is not None:
            return ready, listening or ready, time.monotonic() - launched, int(found.group(1))
    raise AssertionError("unreachable")


async def _lookups(env: Env, scale: Scale, result: Result) -> None:
    database_url = await env.postgres()
    config = env.bridge_config(database_url, logging={"level": "INFO"})
    started = time.monotonic()
    seeded = await _seed(config, scale.lookup_transactions, active_only=False)
    result.figures.append(Figure("(c) seeding", time.monotonic() - started, "s"))
    await _mark_reconciled(config)
    process = BridgeProcess(config, env.workdir)
    try:
        await process.start()
        pid = _pid(process)
        rng = random.Random(6)  # noqa: S311 (test data, not security)
        token = config.api.token.get_secret_value()
        async with ClientSession(
            base_url=process.url(""),
            headers={"Authorization": f"Bearer {token}"},
            timeout=ClientTimeout(total=30),
        ) as session:
            # Users as often as they trade: a random transaction's buyer or seller.
            rounds = [
                (
                    "/health",
                    f"/api/v1/transactions/{rng.choice(seeded.transaction_ids)}",
                    f"/api/v1/users/{rng.choice(rng.choice(seeded.parties))}/rooms",
                )
                for _ in range(WARMUP_CALLS + scale.lookups)
            ]
            for paths in rounds[:WARMUP_CALLS]:
                for path in paths:
                    await _timed_get(session, path)
            backends = DatabaseBackends(config.database.url, config.database.max_connections)
            await backends.refresh()
            meter = env.meter(bridge=lambda: pid, **backends.meters())
            meter.start()
            timed = [
                [await _timed_get(session, p) for p in paths] for paths in rounds[WARMUP_CALLS:]
            ]
            await backends.refresh()
            result.cpu_seconds.update(merge_backends(meter.stop()))
    finally:
        await asyncio.to_thread(_stop, process)
    health, by_id, chats = (percentiles([t[k] for t in timed]) for k in range(3))
    result.figures[:0] = [
        Figure("(c) GET /health p50 (baseline)", health["p50"], "ms"),
        Figure("(c) GET /health p99 (baseline)", health["p99"], "ms"),
        Figure("(c) GET transaction p50", by_id["p50"], "ms"),
        Figure("(c) GET transaction p99", by_id["p99"], "ms"),
        at_most("(c) GET transaction p99 / health", by_id["p99"] / health["p99"], "x", 3),
        Figure("(c) GET chat list p50", chats["p50"], "ms"),
        Figure("(c) GET chat list p99", chats["p99"], "ms"),
        at_most("(c) chat list p99 / health", chats["p99"] / health["p99"], "x", 3),
        Figure(f"(c) lookups p99 under {LOOKUP_UNDER_MS} ms (1 yes)", _under(by_id, chats), ""),
    ]


def _under(*figures: dict[str, float]) -> float:
    return float(all(figure["p99"] < LOOKUP_UNDER_MS for figure in figures))


async def _mark_reconciled(config: Config) -> None:
    """As a bridge that compared every room leaves its database: a completed run now."""
    connection = await asyncpg.connect(config.database.url, timeout=10)
    try:
        await connection.execute(
            "UPDATE reconcile_runs SET started_at = $1, completed_at = $1, fingerprint = $2",
            int(time.time() * 1000),
            plan_fingerprint(config),
        )
    finally:
        await connection.close()


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


_TRANSACTION_COLUMNS = [
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
    "changed_at",
]


async def _seed(config: Config, transactions: int, *, active_only: bool) -> Seeded:
    """Migrate, then COPY users, transactions, chat messages and read positions in, in chunks
    of SEED_CHUNK transactions (a million at once would hold gigabytes of tuples).

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
    seeded = Seeded([], [], [])
    connection = await asyncpg.connect(config.database.url, timeout=10)
    try:
        await connection.copy_records_to_table(
            "marketplace_users",
            records=[(user, _mxid(user), now - year) for user in users],
            columns=["user_id", "matrix_id", "created_at"],
        )
        for first in range(0, transactions, SEED_CHUNK):
            rows, messages, reads = [], [], []
            for n in range(first, min(transactions, first + SEED_CHUNK)):
                buyer, seller = rng.sample(users, 2)
                created = now - year + year * n // transactions
                state, outcome, paid, closed = _state(n, created, active_only)
                room = f"!{'active' if active_only else 'seed'}{n}:localhost"
                tx, title = f"tx-{n:07d}", rng.choice(_TITLES)
                # Last changed before the bridge first starts (the latest stamps of this
                # year of deals are in the future), so that start's reconcile covers it.
                changed = min(closed or paid or created, now - 600_000)
                times = (created, paid, closed, changed)
                rows.append((tx, title, buyer, seller, state, outcome, room, "12", *times))
                seeded.transaction_ids.append(tx)
                seeded.parties.append((buyer, seller))
                seeded.states.append(state)
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
            await connection.copy_records_to_table(
                "transactions", records=rows, columns=_TRANSACTION_COLUMNS
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
    return seeded


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

"""Ingest: how many room events a second our homeserver route stores and acknowledges.

No Synapse: this driver plays the homeserver and PUTs transactions of 100 realistic events
(text messages mostly, some joins and reactions, and a few read receipts) straight at the
route the bridge serves, from several clients at once, timed from the first PUT to the last 200:

    clients (ingest_concurrency) --PUT /_matrix/app/v1/transactions/{txn}--> aiohttp app
        -> HomeserverRoutes: token, JSON, parse_transaction
        -> HomeserverIntake -> InboxStore.store_transaction -> inbox_events -> 200

The same transactions go three times, each into a fresh store: PostgreSQL, SQLite, and
"storage off" (a store that keeps nothing: what parsing and HTTP alone cost, the ceiling the
two databases are compared with). After each stored run the inbox must hold every event sent.
The route runs in this process, so the "bench driver" CPU is the clients and the bridge's side
together; "postgres" is the database's own server processes. CPU under plain names is the
PostgreSQL pass's (the judged one); the other passes' entries carry their store's name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
import string
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from prometheus_client import CollectorRegistry

from appservice.routes import HomeserverRoutes
from appservice.transactions import Transaction
from bridge.config import Config
from bridge.homeserver.inbox import RECEIPT_EVENT_TYPE, InboxStore
from bridge.homeserver.intake import HomeserverIntake
from bridge.runtime.clock import SystemClock
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from bridge.storage.database import create_database, start_database
from tests.harness import free_port

from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends, merge_backends
from .report import Figure, Result, at_least

EVENTS_PER_TRANSACTION = 100
RECEIPTS_PER_TRANSACTION = 3
ROOMS = 20
# Durable storage (a commit per transaction, waiting for its WAL on disk) keeps at least this
# share of the route's rate with storage off, in the same run (0.33 recorded; an absolute
# 5,000 events/s target before, which a slower processor need not meet).
SHARE_OF_STORAGE_OFF = 0.2
# Each pass: generous for a slow disk (SQLite syncs every transaction), still bounded.
PASS_SECONDS = 300.0
PUT_SECONDS = 60.0

_WORDS = (
    "hi is the bike still available could you send more photos of the frame and the wheels "
    "I can pick it up on saturday morning near the station would you take a bit less for it "
    "the paint has a few scratches but it rides well tyres were changed last spring thanks "
    "sure no problem I will ship it tomorrow with tracking and send you the number when done"
).split()
_REACTIONS = ("👍", "🙏", "😊", "✅", "❤️")


@dataclass(frozen=True, slots=True)
class Batch:
    """One homeserver transaction, encoded before the clock starts."""

    txn_id: str
    body: bytes


class NoStorage:
    """An `InboxStore` stand-in that keeps nothing: the route's cost without a database."""

    async def store_transaction(self, txn: Transaction, along: object = None) -> None:
        return None


class NoRecovery:
    """Nothing fails to be stored here: the benchmark fails loudly instead."""

    def store_failed(self, txn: Transaction) -> None:
        raise RuntimeError(f"transaction {txn.txn_id} could not be stored")

    async def store_refused(self) -> None:
        return None


async def run(env: Env, scale: Scale) -> Result:
    result = Result("ingest")
    rng = random.Random(4)  # noqa: S311 (test data, not security)
    rooms = [f"!{_token(rng, 18)}:localhost" for _ in range(ROOMS)]
    # Each client first sends one unmeasured transaction: connections and pools are warm.
    warmup = [_batch(rng, rooms, f"warmup-{i}") for i in range(scale.ingest_concurrency)]
    batches = [_batch(rng, rooms, f"txn-{i}") for i in range(scale.ingest_transactions)]
    rates: dict[str, float] = {}
    passes = (("storage off", None), ("PostgreSQL", "postgres"), ("SQLite", "sqlite"))
    for label, backend in passes:
        if backend == "postgres":
            url = await env.postgres()
        elif backend == "sqlite":
            url = env.sqlite(f"ingest-{secrets.token_hex(4)}.db")
        else:
            url = env.sqlite("unused.db")  # never opened
        config = env.bridge_config(url)
        rate, cpu = await _pass(env, config, backend, warmup, batches, scale.ingest_concurrency)
        rates[label] = rate
        # The judged pass (PostgreSQL) under the plain names; the others named by their store.
        for name, seconds in merge_backends(cpu).items():
            key = name if backend == "postgres" or name == "synapse" else f"{name} ({label})"
            result.cpu_seconds[key] = round(result.cpu_seconds.get(key, 0.0) + seconds, 2)
    off = rates["storage off"]
    result.figures = [
        Figure("events/s, PostgreSQL", rates["PostgreSQL"], "ev/s"),
        Figure("events/s, SQLite", rates["SQLite"], "ev/s"),
        Figure("events/s, storage off", off, "ev/s"),
        at_least("PostgreSQL / storage off", rates["PostgreSQL"] / off, "x", SHARE_OF_STORAGE_OFF),
        Figure("SQLite / storage off", rates["SQLite"] / off, "x"),
    ]
    sizes = [len(event) for event in _event_sizes(batches[0])]
    result.notes = (
        f"{len(batches)} transactions of {EVENTS_PER_TRANSACTION} events and "
        f"{RECEIPTS_PER_TRANSACTION} receipts over {ROOMS} rooms, {scale.ingest_concurrency} "
        f"concurrent clients; events {min(sizes)}-{max(sizes)} bytes of JSON "
        f"(mean {sum(sizes) // len(sizes)})"
    )
    return result


async def _pass(
    env: Env,
    config: Config,
    backend: str | None,
    warmup: list[Batch],
    batches: list[Batch],
    concurrency: int,
) -> tuple[float, dict[str, float]]:
    """Events per second for one store, and the CPU each process spent on them."""
    db = None
    if backend is not None:
        db = create_database(config.database)
        await start_database(db)
    try:
        store = InboxStore(db, SystemClock()) if db is not None else NoStorage()
        inbound = HomeserverIntake(
            store, config.bot_mxid, Metrics(CollectorRegistry()), Wakeup(), NoRecovery()
        )
        hs_token = config.appservice.hs_token.get_secret_value()
        routes = HomeserverRoutes(hs_token, inbound, logging.getLogger("bridge.homeserver"))
        async with (
            _serving(routes, config.appservice.max_transaction_bytes) as base_url,
            ClientSession(
                connector=TCPConnector(limit=concurrency),
                timeout=ClientTimeout(total=PUT_SECONDS),
                headers={"Authorization": f"Bearer {hs_token}"},
            ) as session,
        ):
            await _send_all(session, base_url, warmup, concurrency)
            backends = None
            if backend == "postgres":
                backends = DatabaseBackends(config.database.url, config.database.max_connections)
                await backends.refresh()
            meter = env.meter(**(backends.meters() if backends else {}))
            meter.start()
            started = time.perf_counter()
            async with asyncio.timeout(PASS_SECONDS):
                await _send_all(session, base_url, batches, concurrency)
            elapsed = time.perf_counter() - started
            if backends is not None:
                await backends.refresh()
            cpu = meter.stop()
        if db is not None:
            await _check_stored(db, len(warmup) + len(batches))
    finally:
        if db is not None:
            await db.stop()
        if backend == "sqlite":
            _remove_sqlite(config.database.url)
    return len(batches) * EVENTS_PER_TRANSACTION / elapsed, cpu


@asynccontextmanager
async def _serving(routes: HomeserverRoutes, max_bytes: int) -> AsyncIterator[str]:
    """The homeserver routes, as the bridge builds them, on a free loopback port."""
    app = web.Application(client_max_size=max_bytes)
    routes.add_to(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _send_all(
    session: ClientSession, base_url: str, batches: list[Batch], concurrency: int
) -> None:
    """PUT every batch, ``concurrency`` at a time, each client taking the next one in line."""
    pending = iter(batches)

    async def client() -> None:
        for batch in pending:
            url = f"{base_url}/_matrix/app/v1/transactions/{batch.txn_id}"
            async with session.put(
                url, data=batch.body, headers={"Content-Type": "application/json"}
            ) as response:
                text = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"PUT {batch.txn_id} answered {response.status}: {text}")

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def _check_stored(db: Any, transactions: int) -> None:
    """Every event and every moved read position is in the inbox, none parked as dead."""
    events = await db.fetchval(
        "SELECT COUNT(*) FROM inbox_events WHERE event_type <> $1", RECEIPT_EVENT_TYPE
    )
    receipts = await db.fetchval(
        "SELECT COUNT(*) FROM inbox_events WHERE event_type = $1", RECEIPT_EVENT_TYPE
    )
    dead = await db.fetchval("SELECT COUNT(*) FROM inbox_events WHERE status = 'dead'")
    expected = (transactions * EVENTS_PER_TRANSACTION, transactions * RECEIPTS_PER_TRANSACTION)
    if (events, receipts, dead) != (*expected, 0):
        raise RuntimeError(
            f"inbox holds {events} events, {receipts} receipts, {dead} dead; "
            f"sent {expected[0]} events and {expected[1]} receipts"
        )


def _remove_sqlite(url: str) -> None:
    path = Path(url.removeprefix("sqlite://"))
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


# --- the transactions ---------------------------------------------------------------------


def _batch(rng: random.Random, rooms: list[str], name: str) -> Batch:
    """100 room events over the rooms, as Synapse serialises them, and a few receipts."""
    now = int(time.time() * 1000)
    people = {
        room: (f"@buyer-{i}:localhost", f"@seller-{i}:localhost") for i, room in enumerate(rooms)
    }
    events: list[dict[str, Any]] = []
    for n in range(EVENTS_PER_TRANSACTION):
        room = rng.choice(rooms)
        sender = rng.choice(people[room])
        ts = now + n * 37
        if n % 20 == 7:  # a party joins (state)
            event = _event(rng, "m.room.member", room, sender, ts)
            event["state_key"] = sender
            event["content"] = {"membership": "join", "displayname": sender[1:].split(":")[0]}
            event["unsigned"]["prev_content"] = {"membership": "invite"}
            event["unsigned"]["replaces_state"] = _event_id(rng)
        elif n % 20 == 13:  # a reaction to an earlier message of the room
            target = next((e for e in reversed(events) if e["room_id"] == room), None)
            event = _event(rng, "m.reaction", room, sender, ts)
            event["content"] = {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": target["event_id"] if target else _event_id(rng),
                    "key": rng.choice(_REACTIONS),
                }
            }
        else:
            event = _event(rng, "m.room.message", room, sender, ts)
            words = rng.randint(12, 60)
            event["content"] = {
                "msgtype": "m.text",
                "body": " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + ".",
            }
        events.append(event)
    # Readers are new to each transaction: concurrent clients never race on one read
    # position (Synapse sends one transaction at a time), so every receipt moves one.
    ephemeral = []
    for k in range(RECEIPTS_PER_TRANSACTION):
        read = events[-1 - 7 * k]
        reader = f"@reader-{name}-{k}:localhost"
        ephemeral.append(
            {
                "type": "m.receipt",
                "room_id": read["room_id"],
                "content": {read["event_id"]: {"m.read": {reader: {"ts": now + 5000 + k}}}},
            }
        )
    body = json.dumps({"events": events, "ephemeral": ephemeral}, separators=(",", ":"))
    return Batch(f"{name}-{secrets.token_hex(4)}", body.encode())


def _event(rng: random.Random, type_: str, room: str, sender: str, ts: int) -> dict[str, Any]:
    return {
        "type": type_,
        "room_id": room,
        "sender": sender,
        "content": {},
        "origin_server_ts": ts,
        "unsigned": {"age": rng.randint(5, 400)},
        "event_id": _event_id(rng),
        "user_id": sender,
        "age": rng.randint(5, 400),
    }


def _event_id(rng: random.Random) -> str:
    # Room v4+ event ids: "$" and the url-safe base64 of a sha256 (43 characters).
    return "$" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_letters) for _ in range(length))


def _event_sizes(batch: Batch) -> list[bytes]:
    return [
        json.dumps(event, separators=(",", ":")).encode()
        for event in json.loads(batch.body)["events"]
    ]

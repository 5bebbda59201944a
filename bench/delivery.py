"""Webhook delivery: signed deliveries a second, draining a backlog spread over many rooms.

A fresh PostgreSQL outbox is seeded with message.created notifications (as the inbox worker
queues them), round-robin over the rooms; then the real outbox worker runs in this process
against a bare receiver that answers 200 and notes each webhook id, until every row is
delivered:

    outbox (deliveries rows, delivery_rooms streams)
        -> OutboxWorker: due heads -> lease -> signed POST -> delivered -> next head
        -> receiver (this process): 200, id noted
    clock: the worker's start -> the last delivered_at (the database's own stamps)

Every id must arrive at least once. Queued-to-delivered counts a row queued before the
worker started from that start: with a backlog it is mostly the wait in line.

The machine's own ceiling, in the same run: a bare aiohttp client POSTs the same bodies to the
same receiver, as many at a time as the worker has streams, nothing stored or signed. The
worker must reach at least half of that rate.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import time
from collections import Counter
from contextlib import AsyncExitStack

import asyncpg
from aiohttp import ClientSession, ClientTimeout, web
from mautrix.util.async_db import Database
from prometheus_client import CollectorRegistry

from bridge.config import Config
from bridge.delivery.outbox import Outbox, add_notifications
from bridge.delivery.outbox_worker import MAX_STREAMS, OutboxWorker
from bridge.delivery.sender import WebhookSender
from bridge.delivery.signing import Signer
from bridge.runtime.backoff import Backoff
from bridge.runtime.clock import SystemClock
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from bridge.storage.database import create_database, start_database
from policy.notifications import Participant, RoomContext, message_notifications
from policy.rooms import RoomKind
from tests.harness import free_port

from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends, merge_backends
from .report import Figure, Result, at_least, percentiles

SHARE_OF_BARE = 0.5  # of the rate a bare client reaches against the same receiver
POLL_SECONDS = 0.05
# Generous (a few webhooks a second), yet bounded.
MIN_WAIT_SECONDS = 60.0
SLOWEST_RATE = 20

_WORDS = (
    "hello is the jacket still for sale I would like to know the size and whether it has "
    "any marks on the sleeves could you post it on monday I am paying now via the marketplace "
    "thank you for the quick answer the parcel arrived today and it looks great"
).split()


class Receiver:
    """The marketplace's end at its fastest: no signature check, 200, the id noted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: Counter[str] = Counter()  # webhook id -> times answered 200
        self.order: list[str] = []  # webhook ids as they arrived
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        async def receive(request: web.Request) -> web.Response:
            await request.read()
            webhook_id = request.headers.get("webhook-id", "")
            self.arrivals[webhook_id] += 1
            self.order.append(webhook_id)
            return web.Response()

        app = web.Application()
        app.router.add_post("/hooks", receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def run(env: Env, scale: Scale) -> Result:
    result = Result("delivery")
    database_url = await env.postgres()
    receiver = Receiver()
    async with AsyncExitStack() as stack:
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        config = env.bridge_config(database_url, webhooks={"url": receiver.url})
        db = create_database(config.database)
        await start_database(db)
        stack.push_async_callback(db.stop)
        session = await stack.enter_async_context(
            ClientSession(timeout=ClientTimeout(total=60))  # as the bridge's own
        )
        ids = await _seed(db, scale, config.webhooks.retry_for_seconds * 1000)
        body_bytes = await db.fetchval("SELECT AVG(LENGTH(body)) FROM outbox")
        backends = DatabaseBackends(database_url, config.database.max_connections)
        await backends.refresh()
        meter = env.meter(**backends.meters())
        worker = _worker(db, config, session)
        meter.start()
        started_ms = int(time.time() * 1000)
        worker_task = asyncio.create_task(worker.run(), name="bench-outbox")
        stack.push_async_callback(_cancel, worker_task)
        await _until_delivered(database_url, len(ids), worker_task)
        await backends.refresh()
        result.cpu_seconds = merge_backends(meter.stop())
        result.work = (len(ids), "webhook")
        await _cancel(worker_task)
        rows = await db.fetch(
            "SELECT id, stream, created_at, delivered_at, attempts, body FROM outbox ORDER BY seq"
        )
        _check_order(rows, receiver.order)
        bodies = [row["body"] for row in rows]
        bare_rate = await _bare_rate(session, receiver.url, bodies)
    missing = ids - set(receiver.arrivals)
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(ids)} webhooks never arrived")
    last_ms = max(row["delivered_at"] for row in rows)
    elapsed = max(last_ms - started_ms, 1) / 1000
    waited = [(row["delivered_at"] - max(row["created_at"], started_ms)) for row in rows]
    spread = percentiles(waited)
    repeats = sum(receiver.arrivals.values()) - len(receiver.arrivals)
    if repeats:
        raise RuntimeError(f"{repeats} webhooks were delivered twice without a failure")
    retried = sum(1 for row in rows if row["attempts"] > 1)
    rate = len(ids) / elapsed
    result.figures = [
        at_least("deliveries/s / bare client", rate / bare_rate, "ratio", SHARE_OF_BARE),
        Figure("deliveries/s", rate, "/s"),
        Figure("baseline: bare client POSTs/s", bare_rate, "/s"),
        Figure("queued -> delivered p50", spread["p50"], "ms"),
        Figure("queued -> delivered p99", spread["p99"], "ms"),
    ]
    result.notes = (
        f"{len(ids)} message.created webhooks (mean body {body_bytes:.0f} bytes) over "
        f"{scale.delivery_rooms} rooms in {elapsed:.2f}s; {repeats} delivered twice, "
        f"{retried} needed a retry, each room's order kept; the bare client at the same "
        f"concurrency ({MAX_STREAMS}) over the same bodies"
    )
    return result


def _check_order(rows: list, arrivals: list[str]) -> None:
    """Each stream's webhooks first arrived in the order they were queued (rows by seq)."""
    first: dict[str, int] = {}
    for position, webhook_id in enumerate(arrivals):
        first.setdefault(webhook_id, position)
    last_of_stream: dict[str, int] = {}
    for row in rows:
        position = first.get(row["id"], -1)
        if position < last_of_stream.get(row["stream"], -1):
            raise RuntimeError(f"{row['id']} of {row['stream']} arrived before an earlier one")
        last_of_stream[row["stream"]] = position


async def _bare_rate(session: ClientSession, url: str, bodies: list[str]) -> float:
    """POSTs a second of a bare client sending ``bodies`` to ``url``, MAX_STREAMS at a time."""
    queue = iter(bodies)

    async def poster(n: int) -> None:
        for i, body in enumerate(queue):  # shared: each body is posted once
            headers = {"content-type": "application/json", "webhook-id": f"bare-{n}-{i}"}
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(poster(n) for n in range(MAX_STREAMS)))
    return len(bodies) / (time.perf_counter() - started)


def _worker(db: Database, config: Config, session: ClientSession) -> OutboxWorker:
    """The outbox worker as the bridge builds it (bridge.app)."""
    webhooks, clock = config.webhooks, SystemClock()
    signer = Signer([secret.get_secret_value() for secret in webhooks.secrets])
    sender = WebhookSender(session, str(webhooks.url), webhooks.timeout_seconds, signer, clock)
    return OutboxWorker(
        Outbox(db),
        sender.send,
        Backoff(webhooks.backoff_initial_seconds, webhooks.backoff_max_seconds, True),
        int(webhooks.timeout_seconds * 1000),
        clock,
        Metrics(CollectorRegistry()),
        Wakeup(),
    )


async def _seed(db: Database, scale: Scale, retry_for_ms: int) -> set[str]:
    """The backlog, queued as the inbox worker queues it (one database transaction)."""
    rng = random.Random(5)  # noqa: S311 (test data, not security)
    rooms = [
        (f"!{secrets.token_urlsafe(13)}:localhost", f"tx-{n:05d}")
        for n in range(scale.delivery_rooms)
    ]
    bot = "@marketbot:localhost"
    ids: set[str] = set()
    now = int(time.time() * 1000)
    async with db.acquire() as conn, conn.transaction():
        for n in range(scale.deliveries):
            r = n % len(rooms)
            room_id, transaction_id = rooms[r]
            buyer = Participant(f"b-{r}", f"@buyer-{r}:localhost", "buyer")
            seller = Participant(f"s-{r}", f"@seller-{r}:localhost", "seller")
            context = RoomContext(
                room_id, RoomKind.TRANSACTION, transaction_id, (buyer, seller), bot
            )
            event = {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": rng.choice((buyer, seller)).matrix_id,
                "event_id": "$" + base64.urlsafe_b64encode(rng.randbytes(32)).decode()[:43],
                "origin_server_ts": now + n,
                "content": {
                    "msgtype": "m.text",
                    "body": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 30))),
                },
            }
            notifications, _ = message_notifications(event, context)
            await add_notifications(conn, room_id, notifications, retry_for_ms, now)
            ids.update(notification.id for notification in notifications)
    if len(ids) != scale.deliveries:
        raise RuntimeError(f"seeded {len(ids)} webhooks, wanted {scale.deliveries}")
    return ids


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _until_delivered(database_url: str, total: int, worker: asyncio.Task) -> None:
    """Poll (on a connection of its own, not the worker's pool) until every row is delivered."""
    deadline = time.monotonic() + max(MIN_WAIT_SECONDS, total / SLOWEST_RATE)
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        while True:
            delivered = await conn.fetchval(
                "SELECT COUNT(*) FROM outbox WHERE status = 'delivered'"
            )
            if delivered == total:
                return
            if worker.done():
                raise RuntimeError(f"the outbox worker stopped: {worker!r}")
            if time.monotonic() > deadline:
                status = await conn.fetch("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                raise TimeoutError(f"not all {total} webhooks delivered in time: {status}")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await conn.close()

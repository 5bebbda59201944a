"""Rows handed to the outbox worker as they are queued: leased by the statement that adds
them when their stream has nothing pending, and delivered with no statement of their own to
lease them (the inbox worker's way for a message's webhooks).

The worker runs with a poll of an hour here, so that any delivery seen came from the
hand-off, not from a pass over the outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.delivery.outbox import Outbox, OutboxRow, handed_over, queue_notifications
from bridge.delivery.outbox_worker import LEASE_MS, MAX_STREAMS, RENEW_SECONDS, OutboxWorker
from bridge.homeserver.inbox import InboxStore
from bridge.market import Market
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from bridge.storage.writes import Rows, Writes
from policy.ids import TransactionId
from tests.harness import eventually

from .conftest import (
    BUYER,
    SELLER,
    CountingWakeup,
    build_enforcer,
    build_runner,
    build_worker,
    new_transaction,
)
from .fakes import FakeClock, FakeMatrix
from .test_inbox_worker import reset, store, text
from .test_outbox_worker import (
    ATTEMPT_MS,
    BACKOFF,
    RETRY_FOR_MS,
    Receiver,
    notification,
    queue,
    row_of,
)


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check)


class CountingOutbox(Outbox):
    """The outbox, counting its passes that lease streams' heads and what they leased."""

    lease_passes = 0

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.leased_by_passes: list[str] = []
        # Run by the next passes, one each, before they return what they leased.
        self.during_passes: list[Callable[[], Awaitable[None]]] = []

    async def lease_heads(self, now: int, until: int, limit: int) -> list[OutboxRow]:
        self.lease_passes += 1
        leased = await super().lease_heads(now, until, limit)
        self.leased_by_passes += [row.id for row in leased]
        if self.during_passes:
            await self.during_passes.pop(0)()
        return leased


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def outbox(db: Database) -> CountingOutbox:
    return CountingOutbox(db)


@pytest.fixture
def wakeup() -> CountingWakeup:
    return CountingWakeup()


@pytest.fixture
async def worker(
    outbox: CountingOutbox,
    receiver: Receiver,
    clock: FakeClock,
    metrics: Metrics,
    wakeup: CountingWakeup,
    db: Database,
) -> AsyncIterator[OutboxWorker]:
    """A running worker that has delivered once (so the receiver is known to answer)."""
    worker = OutboxWorker(outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, wakeup)
    await queue(db, clock, "!first", "first")
    running = asyncio.create_task(worker.run())
    await until(lambda: receiver.delivered == ["first"] and not worker._streams)
    yield worker
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def queue_leased(
    db: Database, clock: FakeClock, stream: str, lease_until: int, *ids: str
) -> Rows:
    queued: Rows = []
    writes = Writes()
    notes = [notification(webhook_id, clock) for webhook_id in ids]
    queue_notifications(
        writes, stream, notes, RETRY_FOR_MS, clock.now_ms(), queued.extend, lease_until
    )
    async with db.acquire() as conn:
        await writes.run(conn)
    return queued


async def test_rows_leased_as_they_are_queued_are_delivered_without_a_pass(
    worker: OutboxWorker,
    outbox: CountingOutbox,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
) -> None:
    lease_end = worker.accepts(clock.now_ms())
    assert lease_end == clock.now_ms() + LEASE_MS
    rows = handed_over(await queue_leased(db, clock, "!a", lease_end, "a1", "a2"))
    assert [row.id for row in rows] == ["a1", "a2"]
    assert (await row_of(db, "a1"))["lease_until"] == lease_end  # held from the insert on
    await worker.take(rows, lease_end)
    await until(lambda: receiver.delivered == ["first", "a1", "a2"])
    await until(lambda: not worker._streams)
    assert outbox.leased_by_passes == ["first"]  # a1 and a2 were never a pass's
    assert [(await row_of(db, i))["status"] for i in ("a1", "a2")] == ["delivered"] * 2


async def test_a_row_behind_a_pending_one_is_not_leased_and_keeps_its_place(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.gates["!a"] = gate = asyncio.Event()
    await queue(db, clock, "!a", "a1")
    worker._wakeup.set()
    await until(lambda: receiver.attempts[-1:] == ["a1"])  # a1 out, still pending
    queued = await queue_leased(db, clock, "!a", worker.accepts(clock.now_ms()), "a2")
    assert [row["id"] for row in queued] == ["a2"] and handed_over(queued) == []
    assert (await row_of(db, "a2"))["lease_until"] == 0
    gate.set()  # a1's task leases a2 with a1's delivered mark
    await until(lambda: receiver.delivered == ["first", "a1", "a2"])


async def test_rows_handed_over_with_no_slot_free_are_given_back(
    worker: OutboxWorker,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
    wakeup: CountingWakeup,
) -> None:
    for n in range(MAX_STREAMS):  # every slot held by a stream waiting at the receiver
        receiver.gates[f"!s{n}"] = asyncio.Event()
        await queue(db, clock, f"!s{n}", f"s{n}")
    worker._wakeup.set()
    await until(lambda: len(receiver.attempts) == 1 + MAX_STREAMS)
    assert worker.accepts(clock.now_ms()) == 0  # no slot: nothing is leased as it is queued
    lease_end = clock.now_ms() + LEASE_MS
    rows = handed_over(await queue_leased(db, clock, "!a", lease_end, "a1"))
    sets = wakeup.sets
    await worker.take(rows, lease_end)
    assert (await row_of(db, "a1"))["lease_until"] == 0  # free for the next pass
    assert wakeup.sets > sets
    assert "a1" not in receiver.attempts
    for gate in receiver.gates.values():
        gate.set()
    await until(lambda: "a1" in receiver.delivered)


async def test_streams_that_end_while_a_pass_leases_wake_the_worker_for_the_rest(
    worker: OutboxWorker,
    outbox: CountingOutbox,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
    wakeup: CountingWakeup,
) -> None:
    """Every slot busy and more streams waiting: a stream that ends wakes the worker for the
    next. One that ends while a pass is leasing must too, though that pass then leaves a
    slot free, and so must one ending during the pass after it (a regression: such endings
    went unseen until the next poll or lease end, and the delivery benchmark fell from 0.55
    to 0.15 of a bare client)."""
    held = [f"!s{n}" for n in range(MAX_STREAMS)]
    for stream in held:
        receiver.gates[stream] = asyncio.Event()
        await queue(db, clock, stream, stream[1:])
    for n in range(3):  # waiting for a slot
        await queue(db, clock, f"!w{n}", f"w{n}")
    worker._wakeup.set()
    await until(lambda: len(receiver.attempts) == 1 + MAX_STREAMS)
    woken: list[bool] = []

    def ending(stream: str) -> Callable[[], Awaitable[None]]:
        async def end() -> None:  # during a pass: a held stream delivers and ends
            sets = wakeup.sets
            receiver.gates[stream].set()
            await until(lambda: stream not in worker._streams)
            woken.append(wakeup.sets > sets)

        return end

    outbox.during_passes += [ending(held[1]), ending(held[2])]
    receiver.gates[held[0]].set()  # its end wakes the first of those passes
    await until(lambda: len(woken) == 2)
    assert woken == [True, True]
    await until(lambda: {"w0", "w1", "w2"} <= set(receiver.delivered))
    for gate in receiver.gates.values():
        gate.set()


async def test_nothing_is_leased_for_a_worker_not_running_or_whose_receiver_fails(
    outbox: CountingOutbox, receiver: Receiver, clock: FakeClock, metrics: Metrics, db: Database
) -> None:
    worker = OutboxWorker(
        outbox,
        receiver.send,
        BACKOFF,
        ATTEMPT_MS,
        clock,
        metrics,
        CountingWakeup(),
    )
    assert worker.accepts(clock.now_ms()) == 0  # not running
    receiver.failing["!first"] = "HTTP 503"
    await queue(db, clock, "!first", "first")
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: receiver.attempts == ["first"] and not worker._streams)
        assert worker.accepts(clock.now_ms()) == 0  # its last answer was a failure
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_rows_whose_lease_could_end_before_its_renewal_go_by_a_pass(
    worker: OutboxWorker,
    outbox: CountingOutbox,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
) -> None:
    lease_end = worker.accepts(clock.now_ms())
    rows = handed_over(await queue_leased(db, clock, "!a", lease_end, "a1"))
    clock.advance((LEASE_MS - RENEW_SECONDS * 1000) / 1000)  # the statement took this long
    passes = outbox.lease_passes
    await worker.take(rows, lease_end)  # given back, and the worker woken
    await until(lambda: "a1" in receiver.delivered)
    assert outbox.lease_passes > passes


async def test_a_hand_off_come_after_its_lease_ended_leaves_whoever_took_the_rows_alone(
    worker: OutboxWorker,
    outbox: CountingOutbox,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
) -> None:
    lease_end = worker.accepts(clock.now_ms())
    rows = handed_over(await queue_leased(db, clock, "!a", lease_end, "a1"))
    clock.advance(LEASE_MS / 1000 + 1)  # the database stalled: the lease ended meanwhile
    now = clock.now_ms()
    (taken,) = await outbox.lease_heads(now, now + LEASE_MS, 16)  # another process's pass
    assert taken.id == "a1"
    await worker.take(rows, lease_end)
    assert (await row_of(db, "a1"))["lease_until"] == now + LEASE_MS  # still the other's
    assert "a1" not in receiver.attempts and "!a" not in worker._streams


class RecordingDelivery:
    """The outbox worker as the inbox worker sees it: what it was handed."""

    def __init__(self, accepting: bool) -> None:
        self.accepting = accepting
        self.taken: list[tuple[list[str], int]] = []

    def accepts(self, now: int) -> int:
        return now + LEASE_MS if self.accepting else 0

    async def take(self, rows: list[OutboxRow], lease_end: int) -> None:
        self.taken.append(([row.id for row in rows], lease_end))


async def outbox_leases(db: Database) -> dict[str, tuple[str, int]]:
    """Each message.created row's event id -> its webhook id and lease."""
    rows = await db.fetch(
        "SELECT id, body, lease_until FROM outbox WHERE type = 'message.created'"
    )
    return {
        json.loads(row["body"])["data"]["event_id"]: (row["id"], row["lease_until"])
        for row in rows
    }


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("accepting", [True, False])
async def test_the_inbox_hands_over_a_rooms_first_webhook_and_wakes_the_worker_for_the_rest(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    accepting: bool,
) -> None:
    """Two messages in one push: the first's webhook leased as it is queued and handed over
    once committed (its stream had nothing pending); the second's queued behind it, not
    leased, for whoever delivers the first to lease with its delivered mark (SQLite: both in
    the batch's transaction; PostgreSQL: a statement each)."""
    await market.transactions.create(new_transaction())
    room = (await market.transactions.record_payment(TransactionId("order-1"))).room_id
    assert room is not None
    delivery = RecordingDelivery(accepting)
    enforcer, commands = (
        build_enforcer(config, market),
        build_runner(config, market, matrix, inbox, db, clock),
    )
    worker = build_worker(
        config, db, market, enforcer, commands, clock, metrics, wakeups, delivery
    )
    first, second = text(room, BUYER, "first"), text(room, SELLER, "second")
    await db.execute("UPDATE outbox SET status = 'delivered'")  # the payment's, say
    await store(inbox, first, second)
    reset(wakeups)
    await worker.drain()
    leases = await outbox_leases(db)
    (first_id, first_lease), (_, second_lease) = (
        leases[first["event_id"]],
        leases[second["event_id"]],
    )
    assert second_lease == 0
    if accepting:
        assert delivery.taken == [([first_id], first_lease)]
        assert first_lease == clock.now_ms() + LEASE_MS
    else:
        assert delivery.taken == [] and first_lease == 0
    assert wakeups.outbox.sets >= 1  # type: ignore[attr-defined]

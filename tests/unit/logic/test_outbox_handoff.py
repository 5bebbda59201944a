"""Rows handed to the outbox worker as they are queued: leased by the statement that adds
them when their stream has nothing pending, and delivered with no statement of their own to
lease them (the inbox worker's way for a message's webhooks).

The worker runs with a poll of an hour here, so that any delivery seen came from the
hand-off, not from a pass over the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from mautrix.util.async_db import Database

from bridge.delivery.outbox import Outbox, OutboxRow, handed_over, queue_notifications
from bridge.delivery.outbox_worker import LEASE_MS, MAX_STREAMS, RENEW_SECONDS, OutboxWorker
from bridge.runtime.metrics import Metrics
from bridge.storage.writes import Rows, Writes
from tests.harness import eventually

from .conftest import CountingWakeup
from .fakes import FakeClock
from .test_outbox_worker import (
    ATTEMPT_MS,
    BACKOFF,
    RETRY_FOR_MS,
    Receiver,
    notification,
    queue,
    row_of,
)

HOUR = 3600.0


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check)


class CountingOutbox(Outbox):
    """The outbox, counting its passes that lease streams' heads."""

    lease_passes = 0

    async def lease_heads(self, now: int, until: int, limit: int) -> list[OutboxRow]:
        self.lease_passes += 1
        return await super().lease_heads(now, until, limit)


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
    worker = OutboxWorker(
        outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, wakeup, poll_seconds=HOUR
    )
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
    passes = outbox.lease_passes
    await worker.take(rows, lease_end)
    await until(lambda: receiver.delivered == ["first", "a1", "a2"])
    await until(lambda: not worker._streams)
    assert outbox.lease_passes == passes
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
    assert wakeup.sets == sets + 1
    assert "a1" not in receiver.attempts
    for gate in receiver.gates.values():
        gate.set()
    await until(lambda: "a1" in receiver.delivered)


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
        poll_seconds=HOUR,
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

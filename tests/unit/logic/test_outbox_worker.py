"""The outbox and its worker, with a fake receiver (no HTTP), and the webhook sender against a
receiver on loopback.

Streams are rooms: their rows go out strictly in order, one at a time, and a stream that fails
or hangs never holds up another. Time is the fake clock's: backoff, retry windows and leases
pass with `clock.advance`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from mautrix.util.async_db import Database
from standardwebhooks import Webhook

from bridge.app import http_session
from bridge.delivery.outbox import Outbox, OutboxRow, add_notifications
from bridge.delivery.outbox_worker import (
    BATCH,
    LEASE_MS,
    MAX_STREAMS,
    PROBE_SECONDS,
    OutboxWorker,
)
from bridge.delivery.sender import WebhookSender
from bridge.delivery.signing import Signer
from bridge.runtime.backoff import Backoff
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from policy.notifications import Notification
from tests.harness import eventually, webhook_secret

from .conftest import CountingWakeup, look
from .fakes import FakeClock

RETRY_FOR_MS = 3_600_000
ATTEMPT_MS = 5_000
BACKOFF = Backoff(initial=2.0, maximum=60.0, jitter=True)


# --- the fakes around the worker ------------------------------------------------------------


class Receiver:
    """The marketplace, as the worker's ``send`` sees it: answers None (2xx) or an error."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.delivered: list[str] = []
        self.failing: dict[str, str] = {}  # row id or stream -> the error it answers
        self.raising: set[str] = set()  # row ids whose send raises
        self.gates: dict[str, asyncio.Event] = {}  # stream -> held until set
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.started = asyncio.Event()
        self.cancelled: list[str] = []

    async def send(self, row: OutboxRow) -> str | None:
        self.attempts.append(row.id)
        self.started.set()
        self.in_flight[row.stream] += 1
        self.peak[row.stream] = max(self.peak[row.stream], self.in_flight[row.stream])
        try:
            gate = self.gates.get(row.stream)
            if gate is not None:
                await gate.wait()
            for _ in range(3):  # give another attempt the chance to overlap, were it allowed
                await asyncio.sleep(0)
            if row.id in self.raising:
                raise RuntimeError(f"sender bug on {row.id}")
            error = self.failing.get(row.id) or self.failing.get(row.stream)
            if error is None:
                self.delivered.append(row.id)
            return error
        except asyncio.CancelledError:
            self.cancelled.append(row.id)
            raise
        finally:
            self.in_flight[row.stream] -= 1


class DeadLetters:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.fail = False

    async def __call__(self, row: OutboxRow, error: str) -> None:
        self.seen.append((row.id, error))
        if self.fail:
            raise RuntimeError("the admin room is unreachable")


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def dead() -> DeadLetters:
    return DeadLetters()


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db)


@pytest.fixture
def worker(
    outbox: Outbox, receiver: Receiver, clock: FakeClock, metrics: Metrics, dead: DeadLetters
) -> OutboxWorker:
    return OutboxWorker(
        outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, Wakeup(), on_dead=dead
    )


def notification(webhook_id: str, clock: FakeClock) -> Notification:
    return Notification("message.created", webhook_id, clock.now_ms(), {"n": webhook_id})


async def queue(
    db: Database, clock: FakeClock, stream: str, *ids: str, retry_for_ms: int = RETRY_FOR_MS
) -> int:
    notes = [notification(webhook_id, clock) for webhook_id in ids]
    async with db.acquire() as conn, conn.transaction():
        return await add_notifications(conn, stream, notes, retry_for_ms, clock.now_ms())


async def row_of(db: Database, webhook_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM outbox WHERE id = $1", webhook_id)
    assert row is not None, webhook_id
    return dict(row)


async def statuses(db: Database) -> dict[str, str]:
    return {r["id"]: r["status"] for r in await db.fetch("SELECT id, status FROM outbox")}


async def deliver_all(worker: OutboxWorker) -> None:
    """Drain and await the stream tasks until no due row is left (the clock stands still)."""
    for _ in range(50):
        await worker.drain()
        tasks = list(worker._streams.values())
        if not tasks:
            return
        await asyncio.gather(*tasks)
        await asyncio.sleep(0)  # the tasks' done callbacks
    raise AssertionError("the worker never went idle")


@pytest.fixture
def bare_worker(receiver: Receiver, clock: FakeClock, metrics: Metrics) -> OutboxWorker:
    """A worker for its arithmetic only: no database behind its outbox."""
    return OutboxWorker(
        Outbox(None),  # type: ignore[arg-type]
        receiver.send,
        BACKOFF,
        ATTEMPT_MS,
        clock,
        metrics,
        Wakeup(),
    )


def a_row(clock: FakeClock, attempts: int, retry_for_ms: int = RETRY_FOR_MS) -> OutboxRow:
    now = clock.now_ms()
    return OutboxRow(1, "w1", "!room", "message.created", "{}", attempts, now + retry_for_ms, now)


# --- order and independence ---------------------------------------------------------------


async def test_rows_of_one_stream_are_delivered_in_order(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    ids = [f"w{n}" for n in range(1, 7)]
    await queue(db, clock, "!a", *ids)
    await deliver_all(worker)
    assert receiver.attempts == ids
    assert await statuses(db) == dict.fromkeys(ids, "delivered")


async def test_a_row_goes_out_with_its_notification_body(
    outbox: Outbox, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    sent: list[OutboxRow] = []

    async def send(row: OutboxRow) -> None:
        sent.append(row)

    worker = OutboxWorker(outbox, send, BACKOFF, ATTEMPT_MS, clock, metrics, Wakeup())
    await queue(db, clock, "!a", "w1")
    await deliver_all(worker)
    assert [(row.id, row.stream, row.type) for row in sent] == [("w1", "!a", "message.created")]
    assert json.loads(sent[0].body) == notification("w1", clock).body()


async def test_each_stream_keeps_its_own_order_when_streams_interleave(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    for n in range(1, 5):
        await queue(db, clock, "!a", f"a{n}")
        await queue(db, clock, "!b", f"b{n}")
    await deliver_all(worker)
    assert [i for i in receiver.attempts if i.startswith("a")] == ["a1", "a2", "a3", "a4"]
    assert [i for i in receiver.attempts if i.startswith("b")] == ["b1", "b2", "b3", "b4"]


async def test_a_stream_has_one_attempt_in_flight_at_a_time(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "w1", "w2", "w3")
    receiver.gates["!a"] = gate = asyncio.Event()
    for _ in range(3):  # drained again and again while its head is out
        await worker.drain()
        await receiver.started.wait()
    assert receiver.attempts == ["w1"] and len(worker._streams) == 1
    gate.set()
    await deliver_all(worker)
    assert receiver.attempts == ["w1", "w2", "w3"]
    assert receiver.peak["!a"] == 1


async def test_a_failing_stream_does_not_delay_another(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.failing["!a"] = "HTTP 500"
    await queue(db, clock, "!a", "a1", "a2")
    await queue(db, clock, "!b", "b1", "b2", "b3")
    await deliver_all(worker)
    assert receiver.delivered == ["b1", "b2", "b3"]
    assert receiver.attempts.count("a1") == 1 and "a2" not in receiver.attempts  # a2 waits
    assert (await statuses(db))["a1"] == "pending"


async def test_a_hanging_stream_does_not_delay_another(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.gates["!a"] = gate = asyncio.Event()
    await queue(db, clock, "!a", "a1")
    await queue(db, clock, "!b", "b1", "b2")
    await worker.drain()
    await worker._streams["!b"]
    assert receiver.delivered == ["b1", "b2"] and receiver.in_flight["!a"] == 1
    gate.set()
    await deliver_all(worker)
    assert receiver.delivered == ["b1", "b2", "a1"]


async def test_at_most_max_streams_are_delivered_at_once(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    streams = [f"!s{n:02}" for n in range(MAX_STREAMS + 2)]
    gate = asyncio.Event()
    for stream in streams:
        receiver.gates[stream] = gate
        await queue(db, clock, stream, f"w{stream[1:]}")
    await worker.drain()
    await worker.drain()
    assert len(worker._streams) == MAX_STREAMS
    gate.set()
    await deliver_all(worker)
    assert sorted(receiver.delivered) == sorted(f"w{s[1:]}" for s in streams)


# --- failures, backoff and dead letters -----------------------------------------------------


async def test_a_failure_reschedules_the_row_within_its_backoff(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.failing["w1"] = "HTTP 503"
    await queue(db, clock, "!a", "w1")
    failed_at = clock.now_ms()
    await deliver_all(worker)
    row = await row_of(db, "w1")
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")
    assert row["lease_until"] == 0
    assert failed_at + 1_000 <= row["next_attempt_at"] <= failed_at + 2_000  # 2 s, jittered
    clock.advance((row["next_attempt_at"] - clock.now_ms() - 1) / 1000)
    await deliver_all(worker)
    assert receiver.attempts == ["w1"]  # a millisecond early: not yet
    del receiver.failing["w1"]
    clock.advance(0.001)
    await deliver_all(worker)
    assert receiver.attempts == ["w1", "w1"] and receiver.delivered == ["w1"]
    row = await row_of(db, "w1")
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, None)


@pytest.mark.parametrize("draw", ["half", "whole"])
def test_next_attempt_doubles_from_the_initial_delay_up_to_the_maximum(
    bare_worker: OutboxWorker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, draw: str
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low if draw == "half" else high)
    factor = 0.5 if draw == "half" else 1.0
    now = clock.now_ms()
    waits = [bare_worker.next_attempt(a_row(clock, attempts), now) - now for attempts in range(9)]
    whole = [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]
    assert waits == [int(w * factor) for w in whole]


def test_next_attempt_is_jittered_within_half_and_whole_of_the_backoff(
    bare_worker: OutboxWorker, clock: FakeClock
) -> None:
    now = clock.now_ms()
    for attempts in range(8):
        whole = min(60_000, 2_000 * 2**attempts)
        waits = [bare_worker.next_attempt(a_row(clock, attempts), now) - now for _ in range(100)]
        assert all(whole // 2 <= wait <= whole for wait in waits)
        assert len(set(waits)) > 1  # jittered, not fixed


def test_next_attempt_never_passes_retry_until(
    bare_worker: OutboxWorker, clock: FakeClock
) -> None:
    now = clock.now_ms()
    row = a_row(clock, attempts=10, retry_for_ms=1_500)  # the backoff would be 30 to 60 s
    assert bare_worker.next_attempt(row, now) == row.retry_until
    assert bare_worker.next_attempt(row, row.retry_until - 1) == row.retry_until
    assert bare_worker.next_attempt(row, row.retry_until) is None
    assert bare_worker.next_attempt(row, row.retry_until + 1) is None


async def test_after_retry_until_the_row_is_a_dead_letter_and_the_stream_moves_on(
    worker: OutboxWorker,
    receiver: Receiver,
    dead: DeadLetters,
    db: Database,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    receiver.failing["a1"] = "HTTP 500"
    await queue(db, clock, "!a", "a1", "a2", retry_for_ms=20_000)
    retry_until = (await row_of(db, "a1"))["retry_until"]
    await deliver_all(worker)
    while (row := await row_of(db, "a1"))["status"] == "pending":
        assert row["next_attempt_at"] <= retry_until
        assert "a2" not in receiver.attempts  # held behind its head
        clock.advance((row["next_attempt_at"] - clock.now_ms()) / 1000)
        await deliver_all(worker)
        assert len(receiver.attempts) < 20
    assert row["status"] == "dead" and row["last_error"] == "HTTP 500"
    assert clock.now_ms() >= retry_until
    assert row["attempts"] == receiver.attempts.count("a1") >= 2
    assert dead.seen == [("a1", "HTTP 500")]
    assert receiver.delivered == ["a2"]
    await deliver_all(worker)
    assert dead.seen == [("a1", "HTTP 500")]  # told once
    registry = metrics.registry
    assert registry.get_sample_value("bridge_webhooks_dead_lettered_total") == 1
    assert registry.get_sample_value("bridge_webhooks_retried_total") == row["attempts"] - 1


async def test_a_failing_dead_letter_handler_does_not_stop_delivery(
    worker: OutboxWorker,
    receiver: Receiver,
    dead: DeadLetters,
    db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead.fail = True
    receiver.failing["a1"] = "HTTP 410"
    await queue(db, clock, "!a", "a1", "a2", "a3", retry_for_ms=0)  # the first failure is final
    with caplog.at_level(logging.ERROR, logger="bridge.delivery"):
        await deliver_all(worker)
    assert dead.seen == [("a1", "HTTP 410")]
    assert receiver.delivered == ["a2", "a3"]
    assert await statuses(db) == {"a1": "dead", "a2": "delivered", "a3": "delivered"}
    assert any(
        r.getMessage() == "Could not announce dead letter a1" and r.exc_info
        for r in caplog.records
    )


async def test_without_a_dead_letter_handler_a_dead_letter_still_unblocks_its_stream(
    outbox: Outbox, receiver: Receiver, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    worker = OutboxWorker(outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, Wakeup())
    receiver.failing["a1"] = "HTTP 500"
    await queue(db, clock, "!a", "a1", "a2", retry_for_ms=0)
    await deliver_all(worker)
    assert await statuses(db) == {"a1": "dead", "a2": "delivered"}


async def test_a_long_error_is_kept_to_500_characters(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.failing["a1"] = "x" * 2_000
    await queue(db, clock, "!a", "a1")
    await deliver_all(worker)
    assert (await row_of(db, "a1"))["last_error"] == "x" * 500


async def test_a_send_that_raises_is_logged_and_retried_once_its_lease_ends(
    worker: OutboxWorker,
    receiver: Receiver,
    db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.raising.add("a1")
    await queue(db, clock, "!a", "a1", "a2")
    with caplog.at_level(logging.ERROR, logger="bridge.delivery"):
        await deliver_all(worker)
    assert any(
        r.getMessage() == "Delivery to !a stopped; it resumes on a later pass" and r.exc_info
        for r in caplog.records
    )
    row = await row_of(db, "a1")
    assert (row["status"], row["attempts"]) == ("pending", 0)  # the attempt went unrecorded
    assert row["lease_until"] == clock.now_ms() + LEASE_MS
    receiver.raising.clear()
    clock.advance(LEASE_MS / 1000)
    await deliver_all(worker)
    assert receiver.attempts == ["a1"]  # the lease still holds at its last millisecond
    clock.advance(0.001)
    await deliver_all(worker)
    assert receiver.delivered == ["a1", "a2"]


# --- queueing, leases ---------------------------------------------------------------------


async def test_the_same_id_queued_twice_is_one_row(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    assert await queue(db, clock, "!a", "w1", "w2") == 2
    clock.advance(5)
    assert await queue(db, clock, "!a", "w1") == 0
    assert await queue(db, clock, "!b", "w2", "w3") == 1  # a known id keeps its stream
    rows = await db.fetch("SELECT id, stream, created_at FROM outbox ORDER BY seq")
    assert [(r["id"], r["stream"]) for r in rows] == [("w1", "!a"), ("w2", "!a"), ("w3", "!b")]
    assert rows[0]["created_at"] == rows[1]["created_at"] == clock.now_ms() - 5_000
    await deliver_all(worker)
    assert sorted(receiver.attempts) == ["w1", "w2", "w3"]


async def test_a_row_leased_by_another_worker_waits_for_its_lease(
    worker: OutboxWorker, receiver: Receiver, outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "w1", "w2")
    head = await outbox.next_head("!a")
    assert head is not None
    now = clock.now_ms()
    assert await outbox.lease(head, now, now + 60_000)  # another process is sending it
    await deliver_all(worker)
    await worker.deliver_stream(head)
    assert receiver.attempts == []
    clock.advance(60)
    await deliver_all(worker)
    assert receiver.attempts == []  # its lease ends after this millisecond
    clock.advance(0.001)
    await deliver_all(worker)
    assert receiver.attempts == ["w1", "w2"]


async def test_a_lease_ending_before_the_next_poll_wakes_the_worker_when_it_ends(
    outbox: Outbox, receiver: Receiver, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    # A killed replica's lease: the survivor looks again when it ends, not a poll later.
    wakeup = CountingWakeup()
    worker = OutboxWorker(outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, wakeup)
    await queue(db, clock, "!a", "w1")
    head = await outbox.next_head("!a")
    assert head is not None
    now = clock.now_ms()
    assert await outbox.lease(head, now, now + 50)  # held to its last millisecond
    loop = asyncio.get_running_loop()
    started = loop.time()
    await worker.drain()  # its probe finds nothing waiting: the receiver is not failing
    await look(db, clock, worker.due)  # the watch finds the lease's end
    assert receiver.attempts == [] and wakeup.sets == 0
    # The wake-up is timed by the event loop, as every timer here: real time, bounded.
    await asyncio.wait_for(wakeup.wait(), 5)
    assert wakeup.sets == 1 and loop.time() - started >= 0.05
    clock.advance(0.051)
    await deliver_all(worker)
    assert receiver.attempts == ["w1"]


async def test_a_lease_has_one_holder_and_only_on_the_due_head(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "w1", "w2")
    now = clock.now_ms()
    head = await outbox.next_head("!a")
    assert head is not None and head.id == "w1"
    behind = dataclasses.replace(head, seq=head.seq + 1, id="w2")
    assert not await outbox.lease(behind, now, now + 1_000)  # not its stream's head
    assert await outbox.lease(head, now, now + 1_000)
    assert not await outbox.lease(head, now, now + 1_000)  # held
    assert not await outbox.lease(head, now + 1_000, now + 2_000)  # held to its last ms
    assert await outbox.lease(head, now + 1_001, now + 2_000)
    await outbox.failed(head, "HTTP 500", now + 10_000)
    assert not await outbox.lease(head, now + 9_999, now + 20_000)  # not due
    assert await outbox.lease(head, now + 10_000, now + 20_000)


async def test_deliver_stream_skips_a_row_that_is_not_its_streams_head(
    worker: OutboxWorker, receiver: Receiver, outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "w1", "w2")
    head = await outbox.next_head("!a")
    assert head is not None
    behind = dataclasses.replace(head, seq=head.seq + 1, id="w2")
    await worker.deliver_stream(behind)
    assert receiver.attempts == []
    await worker.deliver_stream(head)  # the head, then what follows it
    assert receiver.attempts == ["w1", "w2"]


async def test_lease_heads_takes_each_due_streams_head_once(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "a1", "a2")
    await queue(db, clock, "!b", "b1")
    await queue(db, clock, "!c", "c1")
    await queue(db, clock, "!d", "d1")
    now = clock.now_ms()
    d1 = await outbox.next_head("!d")
    assert d1 is not None
    await outbox.failed(d1, "HTTP 500", now + 1_000)
    assert [r.id for r in await outbox.lease_heads(now, now + 500, 2)] == ["a1", "b1"]
    assert [r.id for r in await outbox.lease_heads(now, now + 500, 10)] == ["c1"]  # held, not due
    assert await outbox.lease_heads(now + 500, now + 2_000, 10) == []  # held to its last ms
    leased = await outbox.lease_heads(now + 1_000, now + 2_000, 10)
    assert [r.id for r in leased] == ["a1", "b1", "c1", "d1"]  # leases ended; d1 due


async def test_settling_a_batch_leases_the_rows_behind_it_and_no_one_else_takes_them(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await queue(db, clock, "!a", "a1", "a2", "a3", "a4")
    await queue(db, clock, "!b", "b1")
    now = clock.now_ms()
    (a1, b1) = await outbox.lease_heads(now, now + 500, 10)
    a2, a3 = await outbox.settle([a1], now, now + 500, 2)
    assert (a2.id, a3.id) == ("a2", "a3")
    assert await outbox.lease_heads(now, now + 500, 10) == []  # a2, the head, is held
    assert await outbox.settle([b1], now, now + 500, 2) == []  # nothing behind b1
    await outbox.failed(a2, "HTTP 500", now + 1_000)
    await outbox.release([a3])
    assert await statuses(db) == {
        "a1": "delivered",
        "a2": "pending",
        "a3": "pending",
        "a4": "pending",
        "b1": "delivered",
    }
    assert await outbox.lease_heads(now + 999, now + 2_000, 10) == []  # a2 waits; a3 too
    (a2,) = await outbox.lease_heads(now + 1_000, now + 2_000, 10)
    assert a2.id == "a2" and a2.attempts == 1
    (a4,) = await outbox.settle([a2, a3], now + 1_000, now + 2_000, 5)
    assert a4.id == "a4" and a4.attempts == 0


async def test_a_long_stream_is_delivered_in_order_across_batches(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    ids = [f"w{n:03d}" for n in range(BATCH * 2 + 3)]
    await queue(db, clock, "!a", *ids)
    await deliver_all(worker)
    assert receiver.attempts == ids
    assert set((await statuses(db)).values()) == {"delivered"}


async def test_a_batch_whose_lease_could_lapse_is_settled_and_leased_afresh(
    worker: OutboxWorker, receiver: Receiver, outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    """Slow answers and no renewal (it runs on the event loop's time, which this test does
    not give it): the rows already sent are marked before the lease could end, so no other
    process can take the stream's head while this one still delivers it."""
    send = receiver.send
    step = LEASE_MS // 4

    async def slow(row: OutboxRow) -> str | None:
        clock.advance(step / 1000)  # four attempts eat the lease
        return await send(row)

    worker._send = slow
    await queue(db, clock, "!a", "a1", "a2", "a3", "a4", "a5", "a6")
    leased_at = clock.now_ms()
    (head,) = await outbox.lease_heads(leased_at, leased_at + LEASE_MS, 1)
    await worker._deliver_leased([head], leased_at + LEASE_MS)
    assert receiver.attempts == ["a1", "a2", "a3", "a4", "a5", "a6"]
    rows = await db.fetch("SELECT id, delivered_at FROM outbox ORDER BY seq")
    # a1 alone (the head), then a2-a4 under the lease taken when a1 was marked, stopping
    # where the lease has less than a renewal's interval left; a5, a6 under the next lease.
    assert [r["delivered_at"] - leased_at for r in rows] == [step] + [4 * step] * 3 + [
        6 * step
    ] * 2


async def test_a_stream_keeps_its_short_lease_while_an_attempt_runs(
    outbox: Outbox, receiver: Receiver, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    """Renewed while the stream's task runs: another process waits for a slow receiver
    however long the attempt may take, and takes over LEASE_MS after a killed process."""
    worker = OutboxWorker(
        outbox, receiver.send, BACKOFF, ATTEMPT_MS, clock, metrics, Wakeup(), renew_seconds=0.01
    )
    receiver.gates["!a"] = asyncio.Event()
    await queue(db, clock, "!a", "a1")
    await worker.drain()
    await asyncio.wait_for(receiver.started.wait(), 5)
    for _ in range(3):  # past the first lease, and past ATTEMPT_MS
        clock.advance(LEASE_MS / 1000)
        until = clock.now_ms() + LEASE_MS

        async def renewed(until: int = until) -> bool:
            return (await row_of(db, "a1"))["lease_until"] == until

        await eventually(renewed, within=5)
        assert await outbox.lease_heads(clock.now_ms(), until, 10) == []  # still held
    receiver.gates["!a"].set()
    await asyncio.gather(*worker._streams.values())
    assert receiver.delivered == ["a1"]
    row = await row_of(db, "a1")
    assert (row["status"], row["lease_until"]) == ("delivered", 0)  # no renewal after


async def test_while_the_receiver_fails_the_first_waiting_row_is_probed_every_few_seconds(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    """A backoff grown to minutes does not hold the backlog once the receiver is back: a
    probe finds it back within PROBE_SECONDS, and every waiting row is then due at once."""
    receiver.failing["!a"] = receiver.failing["!b"] = "HTTP 503"
    await queue(db, clock, "!a", "a1", "a2")
    await queue(db, clock, "!b", "b1")
    await deliver_all(worker)
    assert sorted(receiver.attempts) == ["a1", "b1"]
    await db.execute("UPDATE outbox SET next_attempt_at = $1", clock.now_ms() + 600_000)
    clock.advance(PROBE_SECONDS - 0.001)
    await deliver_all(worker)
    assert len(receiver.attempts) == 2  # no probe yet
    clock.advance(0.001)
    await deliver_all(worker)
    assert len(receiver.attempts) == 3  # one probe, still failing: no more
    receiver.failing.clear()
    clock.advance(PROBE_SECONDS)
    await deliver_all(worker)
    assert sorted(receiver.delivered) == ["a1", "a2", "b1"]
    assert receiver.delivered.index("a1") < receiver.delivered.index("a2")


async def test_a_row_the_receiver_refuses_with_a_4xx_is_not_probed(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    """A 4xx refuses one notification, not the receiver: it keeps its backoff."""
    await queue(db, clock, "!a", "a0")
    await deliver_all(worker)  # the receiver answers
    receiver.failing["a1"] = "HTTP 422"
    await queue(db, clock, "!a", "a1")
    await deliver_all(worker)
    await db.execute("UPDATE outbox SET next_attempt_at = $1", clock.now_ms() + 600_000)
    clock.advance(PROBE_SECONDS * 3)
    await deliver_all(worker)
    assert receiver.attempts == ["a0", "a1"]


async def test_run_starts_deliveries_and_cancelling_it_cancels_them(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock
) -> None:
    receiver.gates["!a"] = asyncio.Event()  # never opened
    await queue(db, clock, "!a", "a1")
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(receiver.started.wait(), 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)  # not stuck waiting for its deliveries
    assert receiver.cancelled == ["a1"] and worker._streams == {}
    assert (await row_of(db, "a1"))["status"] == "pending"


# --- replay and dead letters --------------------------------------------------------------


async def _kill(outbox: Outbox, stream: str, error: str = "HTTP 500") -> None:
    """Dead-letter a stream's head."""
    head = await outbox.next_head(stream)
    assert head is not None
    await outbox.failed(head, error, None)


async def _dead_world(outbox: Outbox, db: Database, clock: FakeClock) -> None:
    """a1 and a2 dead in !a, b1 dead in !b, c1 pending, d1 delivered."""
    await queue(db, clock, "!a", "a1", "a2")
    await queue(db, clock, "!b", "b1")
    await queue(db, clock, "!c", "c1")
    await queue(db, clock, "!d", "d1")
    await _kill(outbox, "!a")
    await _kill(outbox, "!a")
    await _kill(outbox, "!b")
    d1 = await outbox.next_head("!d")
    assert d1 is not None
    await outbox.delivered(d1, clock.now_ms())
    clock.advance(100)


async def test_replay_by_ids_queues_those_dead_letters_afresh(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await _dead_world(outbox, db, clock)
    now = clock.now_ms()
    replayed = await outbox.replay(["a2", "b1", "c1", "d1", "nope"], None, 60_000, now)
    assert replayed == 2  # only dead letters; pending, delivered and unknown ids are no-ops
    assert await statuses(db) == {
        "a1": "dead",
        "a2": "pending",
        "b1": "pending",
        "c1": "pending",
        "d1": "delivered",
    }
    row = await row_of(db, "a2")
    assert (row["attempts"], row["next_attempt_at"], row["retry_until"], row["lease_until"]) == (
        0,
        now,
        now + 60_000,
        0,
    )


async def test_replay_by_stream_queues_only_that_streams_dead_letters(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await _dead_world(outbox, db, clock)
    assert await outbox.replay(None, "!a", 60_000, clock.now_ms()) == 2
    assert (await statuses(db))["b1"] == "dead"
    assert {(await row_of(db, i))["status"] for i in ("a1", "a2")} == {"pending"}


async def test_replay_by_ids_within_a_stream_needs_both_to_match(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await _dead_world(outbox, db, clock)
    assert await outbox.replay(["a1", "b1"], "!b", 60_000, clock.now_ms()) == 1
    assert await statuses(db) == {
        "a1": "dead",
        "a2": "dead",
        "b1": "pending",
        "c1": "pending",
        "d1": "delivered",
    }


async def test_replay_all_queues_every_dead_letter(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await _dead_world(outbox, db, clock)
    assert await outbox.replay(None, None, 60_000, clock.now_ms()) == 3
    assert await outbox.dead_letters(10) == []
    assert await outbox.replay(None, None, 60_000, clock.now_ms()) == 0
    assert await outbox.replay([], None, 60_000, clock.now_ms()) == 0


async def test_replayed_dead_letters_are_delivered_in_order(
    worker: OutboxWorker,
    receiver: Receiver,
    dead: DeadLetters,
    outbox: Outbox,
    db: Database,
    clock: FakeClock,
) -> None:
    receiver.failing["!a"] = "HTTP 500"
    await queue(db, clock, "!a", "a1", "a2", retry_for_ms=0)
    await deliver_all(worker)
    assert dead.seen == [("a1", "HTTP 500"), ("a2", "HTTP 500")]
    del receiver.failing["!a"]
    clock.advance(60)
    assert await outbox.replay(None, "!a", RETRY_FOR_MS, clock.now_ms()) == 2
    await deliver_all(worker)
    assert receiver.delivered == ["a1", "a2"]
    assert await statuses(db) == {"a1": "delivered", "a2": "delivered"}
    assert len(dead.seen) == 2


async def test_dead_letters_lists_only_dead_rows_oldest_first(
    outbox: Outbox, db: Database, clock: FakeClock
) -> None:
    await _dead_world(outbox, db, clock)
    letters = await outbox.dead_letters(10)
    assert [(d["id"], d["stream"], d["attempts"], d["last_error"]) for d in letters] == [
        ("a1", "!a", 1, "HTTP 500"),
        ("a2", "!a", 1, "HTTP 500"),
        ("b1", "!b", 1, "HTTP 500"),
    ]
    first = letters[0]
    assert first["type"] == "message.created"
    assert first["created_at"] == clock.now_ms() - 100_000
    assert json.loads(first["body"])["id"] == "a1"
    assert [d["id"] for d in await outbox.dead_letters(2)] == ["a1", "a2"]


# --- metrics ------------------------------------------------------------------------------


async def test_metrics_count_deliveries_retries_and_the_depth(
    worker: OutboxWorker, receiver: Receiver, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    receiver.failing["b1"] = "HTTP 500"
    await queue(db, clock, "!a", "a1", "a2")
    await queue(db, clock, "!b", "b1", "b2")
    await deliver_all(worker)
    value = metrics.registry.get_sample_value
    assert value("bridge_webhooks_delivered_total") == 2
    assert value("bridge_webhooks_retried_total") == 1
    assert value("bridge_webhooks_dead_lettered_total") == 0
    assert value("bridge_outbox_depth") == 0  # counted by the watch, not on every pass
    await look(db, clock, worker.due)
    assert value("bridge_outbox_depth") == 2  # b1 and b2 wait


async def test_latency_is_measured_from_queued_to_delivered(
    worker: OutboxWorker, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    await queue(db, clock, "!a", "a1")
    clock.advance(2.5)
    await deliver_all(worker)
    value = metrics.registry.get_sample_value
    assert value("bridge_webhook_delivery_seconds_count") == 1
    assert value("bridge_webhook_delivery_seconds_sum") == pytest.approx(2.5)


# --- the webhook sender, against a receiver on loopback ---------------------------------


class Marketplace:
    """A webhook receiver: records what reaches it, answers as told."""

    def __init__(self) -> None:
        self.status = 200
        self.cookie: str | None = None  # set on every answer when given
        self.hits: list[tuple[str, dict[str, str], bytes]] = []
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/moved", self.moved)
        app.router.add_post("/elsewhere", self.hook)
        app.router.add_post("/slow", self.slow)
        self.server = TestServer(app, host="127.0.0.1")

    async def hook(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.hits.append((request.path, headers, await request.read()))
        answer = web.Response(status=self.status)
        if self.cookie:
            answer.headers["Set-Cookie"] = self.cookie
        return answer

    async def moved(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, {}, await request.read()))
        raise web.HTTPFound("/elsewhere")

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(status=200)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.port}{path}"


@pytest.fixture
async def marketplace() -> AsyncIterator[Marketplace]:
    market = Marketplace()
    await market.server.start_server()
    try:
        yield market
    finally:
        market.release.set()
        await market.server.close()


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as client:
        yield client


@pytest.fixture
def wall_clock() -> FakeClock:
    """A fake clock at today's time: receivers reject signatures with old timestamps."""
    return FakeClock(time.time_ns() // 1_000_000)


SECRET = webhook_secret()


def sender_for(
    session: ClientSession, url: str, clock: FakeClock, timeout: float = 5.0
) -> WebhookSender:
    return WebhookSender(session, url, timeout, Signer([SECRET]), clock)


def webhook_row(clock: FakeClock, webhook_id: str = "msg_1") -> OutboxRow:
    body = json.dumps(notification(webhook_id, clock).body(), separators=(",", ":"))
    return OutboxRow(1, webhook_id, "!a", "message.created", body, 0, 0, clock.now_ms())


async def test_a_webhook_carries_standard_webhooks_headers_that_verify(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock
) -> None:
    row = webhook_row(wall_clock)
    sender = sender_for(session, marketplace.url("/hook"), wall_clock)
    assert await sender.send(row) is None
    [(path, headers, body)] = marketplace.hits
    assert path == "/hook" and body == row.body.encode()
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(wall_clock.now_ms() // 1000)
    assert headers["content-type"] == "application/json"
    assert Webhook(SECRET).verify(body, headers)["id"] == "msg_1"


async def test_each_attempt_is_signed_afresh_with_the_clocks_time(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock
) -> None:
    row = webhook_row(wall_clock)
    sender = sender_for(session, marketplace.url("/hook"), wall_clock)
    await sender.send(row)
    wall_clock.advance(30)
    await sender.send(row)
    first, second = (headers for _, headers, _ in marketplace.hits)
    assert int(second["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 30
    assert first["webhook-id"] == second["webhook-id"] == "msg_1"
    assert first["webhook-signature"] != second["webhook-signature"]
    for _, headers, body in marketplace.hits:
        Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_answer_is_a_delivery(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock, status: int
) -> None:
    marketplace.status = status
    sender = sender_for(session, marketplace.url("/hook"), wall_clock)
    assert await sender.send(webhook_row(wall_clock)) is None


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
async def test_another_answer_is_an_error_naming_the_status(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock, status: int
) -> None:
    marketplace.status = status
    sender = sender_for(session, marketplace.url("/hook"), wall_clock)
    assert await sender.send(webhook_row(wall_clock)) == f"HTTP {status}"


async def test_a_cookie_the_receiver_sets_is_never_sent_back(
    marketplace: Marketplace, wall_clock: FakeClock
) -> None:
    # By name: a cookie jar keeps no cookie an IP address sets.
    marketplace.cookie = "session=abc; Path=/"
    async with http_session() as session:
        sender = sender_for(session, marketplace.url("/hook", host="localhost"), wall_clock)
        assert await sender.send(webhook_row(wall_clock)) is None
        assert await sender.send(webhook_row(wall_clock, "msg_2")) is None
    assert [headers.get("cookie") for _, headers, _ in marketplace.hits] == [None, None]


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock
) -> None:
    sender = sender_for(session, marketplace.url("/moved"), wall_clock)
    assert await sender.send(webhook_row(wall_clock)) == "HTTP 302"
    assert [path for path, _, _ in marketplace.hits] == ["/moved"]


async def test_a_timeout_is_an_error_string_not_an_exception(
    marketplace: Marketplace, session: ClientSession, wall_clock: FakeClock
) -> None:
    sender = sender_for(session, marketplace.url("/slow"), wall_clock, timeout=0.05)
    error = await sender.send(webhook_row(wall_clock))
    assert isinstance(error, str) and "Timeout" in error


async def test_an_unreachable_receiver_is_an_error_string_not_an_exception(
    session: ClientSession, wall_clock: FakeClock
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = sender_for(session, f"http://127.0.0.1:{port}/hook", wall_clock)
    error = await sender.send(webhook_row(wall_clock))
    assert isinstance(error, str) and error.startswith("ClientConnectorError")

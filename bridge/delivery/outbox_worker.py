"""The outbox worker: delivers each stream's notifications as signed webhooks, in order.

    woken when rows are added (or by `DueWatch`, which finds due heads once a second):
    lease the due head rows (the lowest pending seq of each stream, its retry time
    reached; one statement) -> one task per stream, at most MAX_STREAMS:
        POST (sender) -> 2xx: the next leased row; after the batch, its rows marked
        delivered and the next BATCH rows leased (one statement)
        -> anything else: retry with exponential backoff and jitter until the row's
           `retry_until`; then a dead letter (which unblocks the stream), and the admins told

Rows the inbox worker queues while the worker can take them (`accepts`: it runs, a slot is
free, the receiver's last answer was not a failure) come leased if their stream had nothing
pending, and are handed over in process (`take`): delivered at once, with no statement to
lease them.

A failing receiver for one room never delays another. Leases are short (LEASE_MS) and renewed
while the stream's task runs, so a process that dies mid-attempt holds its stream for LEASE_MS
at most, whatever `webhooks.timeout_seconds`; the once-a-second count of waiting rows also
finds when the first lease held ends, and the worker looks again then, not up to a poll later.
While the receiver fails (5xx, timeouts, refused), the waiting row due first is tried every
PROBE_SECONDS whatever its backoff; once a retried row is delivered, every waiting row is
due at once: the backlog follows the receiver's return within seconds, not after a backoff
grown to `webhooks.backoff_max_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.runtime.backoff import Backoff
from bridge.runtime.clock import Clock
from bridge.runtime.due import POLL_SECONDS, DueCheck
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup, drain_when_woken, keeping_lease

from .outbox import DUE, SETTLE_WIDTH, Outbox, OutboxRow

MAX_STREAMS = 16
BATCH = SETTLE_WIDTH  # rows a stream leases (and marks delivered) at once
# Outlasts RENEW_SECONDS and a late renewal; short, so a killed process's streams are free
# again within seconds. Replicas' clocks must agree well within it, or a live lease can be
# taken: a delivery repeated (same webhook id), never reordered.
LEASE_MS = 3_000
RENEW_SECONDS = 1.0
PROBE_SECONDS = 2.0  # below the 5 s in which a backlog follows the receiver's return

Send = Callable[[OutboxRow], Awaitable[str | None]]  # None: delivered; else the error
DeadLetterHandler = Callable[[OutboxRow, str], Awaitable[None]]


class OutboxWorker:
    def __init__(
        self,
        outbox: Outbox,
        send: Send,
        backoff: Backoff,
        attempt_ms: int,
        clock: Clock,
        metrics: Metrics,
        wakeup: Wakeup,
        on_dead: DeadLetterHandler | None = None,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._outbox = outbox
        self._send = send
        self._backoff = backoff
        self._attempt_ms = attempt_ms
        self._lease_ms = LEASE_MS
        self._renew_seconds = renew_seconds
        # Whether the receiver's last answer was a failure; true at start, as rows may wait
        # from before (a probe finds out). _attempted_at: when a row was last sent or probed.
        self._receiver_failing = True
        self._attempted_at = 0
        self._clock = clock
        self._metrics = metrics
        self._wakeup = wakeup
        self._on_dead = on_dead
        self._streams: dict[str, asyncio.Task] = {}
        self._running = False  # while `run` runs: rows handed over are delivered
        self._slots_full = False
        self._log = logging.getLogger("bridge.delivery")

    async def run(self) -> None:
        self._running = True
        try:
            await drain_when_woken(self.drain, self._wakeup, self._log, "read the outbox")
        finally:
            self._running = False
            for task in self._streams.values():
                task.cancel()
            await asyncio.gather(*self._streams.values(), return_exceptions=True)

    async def drain(self) -> None:
        """Start a delivery task for every stream with a due head, as slots allow."""
        free = MAX_STREAMS - len(self._streams)
        now = self._clock.now_ms()
        if self._receiver_failing and not self._streams:
            await self._probe(now)
        if free > 0:
            leased = await self._outbox.lease_heads(now, now + self._lease_ms, free)
            # Every slot it saw free taken: other streams may wait, so a stream that ends
            # must look again (also one that ended while this pass was leasing: the slots
            # may not all be taken now, but the flag must not be down while any ends).
            self._slots_full = len(leased) == free
            for row in leased:
                self._start([row], now + self._lease_ms)
        else:  # taken by hand-offs meanwhile
            self._slots_full = True

    @property
    def due(self) -> DueCheck:
        """`DueWatch`'s look at the outbox: the rows waiting (a gauge), when the first lease
        held ends, whether a stream's head is due and free (`DUE`)."""
        return DueCheck(DUE, self._found, columns=3)

    def _found(self, depth: int, lease_ends: int | None, head_due: bool) -> None:
        self._metrics.outbox_depth.set(depth)
        now = self._clock.now_ms()
        # A lease that ends before the next look (a killed replica's, say): look then.
        if lease_ends is not None and lease_ends < now + POLL_SECONDS * 1000:
            asyncio.get_running_loop().call_later((lease_ends + 1 - now) / 1000, self._wakeup.set)
        # While the receiver fails and nothing is sent, a pass probes it (`_probe`).
        if head_due or (self._receiver_failing and not self._streams):
            self._wakeup.set()

    def accepts(self, now: int) -> int:
        """Until when rows queued now may be leased for `take` (0: not now): while the
        worker runs, a stream slot is free and the receiver's last answer was not a
        failure (a failing receiver's rows wait for the probe)."""
        if self._running and not self._receiver_failing and len(self._streams) < MAX_STREAMS:
            return now + self._lease_ms
        return 0

    async def take(self, rows: list[OutboxRow], lease_end: int) -> None:
        """Deliver a stream's rows that were leased until ``lease_end`` as they were queued
        (`accepts`), with no statement to lease them. With no slot free by now, or a lease
        that could end before its first renewal (the statement that queued them was slow),
        the worker's next pass takes them instead: their leases given back if still theirs
        (an ended one may be another task's by now)."""
        now = self._clock.now_ms()
        free = self._running and len(self._streams) < MAX_STREAMS
        if free and lease_end > now + self._renew_seconds * 1000:
            self._start(rows, lease_end)
            return
        self._slots_full = self._slots_full or not free  # a stream that ends must look
        if lease_end > now:
            try:
                await self._outbox.release(rows, held_until=lease_end)
            except Exception:  # the lease lapses within LEASE_MS; the census looks then
                self._log.exception("Could not give back the leases of %s", rows[0].stream)
        self._wakeup.set()

    def _start(self, batch: list[OutboxRow], lease_end: int) -> None:
        """Deliver a stream's leased rows, and what follows them, in a task of its own."""
        stream = batch[0].stream
        # The last slot taken (by a pass or a hand-off): other streams may wait, so a stream
        # that ends must look again.
        if len(self._streams) + 1 >= MAX_STREAMS:
            self._slots_full = True
        task = asyncio.create_task(self._deliver_leased(batch, lease_end))
        self._streams[stream] = task
        task.add_done_callback(lambda t: self._stream_done(stream, t))

    def _stream_done(self, stream: str, task: asyncio.Task) -> None:
        # A task that found nothing more may end after the stream's next task started.
        if self._streams.get(stream) is task:
            del self._streams[stream]
        # A stream ends when nothing is left behind its last row (a row added later wakes
        # the worker itself), at a failure (its retry is timed), or at a database error
        # (also timed): only streams waiting for a free slot need a look now.
        if self._slots_full:
            self._wakeup.set()

    async def deliver_stream(self, row: OutboxRow) -> None:
        """Deliver a stream's rows in order from ``row``, if it is the stream's due, unleased
        head (else nothing: another process holds it, or it waits for its retry)."""
        now = self._clock.now_ms()
        if await self._outbox.lease(row, now, now + self._lease_ms):
            await self._deliver_leased([row], now + self._lease_ms)

    async def _probe(self, now: int) -> None:
        """While the receiver fails and nothing is being sent, make the waiting row due
        first due now, once every PROBE_SECONDS: its answer says whether the receiver is
        back, without waiting out a backoff that may have grown to minutes."""
        if now < self._attempted_at + PROBE_SECONDS * 1000:
            return
        self._attempted_at = now
        if not await self._outbox.bring_forward(now):
            self._receiver_failing = False  # nothing waits

    async def _deliver_leased(self, batch: list[OutboxRow], lease_end: int) -> None:
        """Deliver a stream's rows in order, a batch at a time, until none is left or one
        fails, the stream's leases renewed meanwhile. A batch's rows are marked delivered
        together, and the next batch leased, in one statement (so after a crash a batch's
        delivered rows are sent again: at least once, as any delivery can be)."""
        head = batch[0]
        lease = [lease_end]  # where the last renewal took the batch's leases

        async def renew() -> None:
            until = self._clock.now_ms() + self._lease_ms
            await self._outbox.renew(head.stream, until)
            lease[0] = until

        try:
            await keeping_lease(
                self._deliver_batches(batch, lease),
                renew,
                self._renew_seconds,
                self._log,
                f"the webhooks of {head.stream}",
            )
        except Exception:
            # The database failed us; an unrecorded attempt is repeated once its lease ends.
            self._log.exception("Delivery to %s stopped; it resumes on a later pass", head.stream)
            # Look again when that lease has ended rather than at the next poll.
            delay = max(0, lease[0] - self._clock.now_ms()) / 1000
            asyncio.get_running_loop().call_later(delay, self._wakeup.set)

    async def _deliver_batches(self, batch: list[OutboxRow], lease: list[int]) -> None:
        while batch:
            delivered, going_on = await self._attempt_batch(batch, lease)
            if not delivered:
                return
            now = self._clock.now_ms()
            lease[0] = now + self._lease_ms
            more = BATCH if going_on else 0
            batch = await self._outbox.settle(delivered, now, lease[0], more)

    async def _attempt_batch(
        self, batch: list[OutboxRow], lease: list[int]
    ) -> tuple[list[OutboxRow], bool]:
        """Attempt leased rows in order: those delivered, and whether to go on (False after
        a failure; the rows behind it are released). A batch whose lease could lapse (its
        renewals failing) stops there, to be settled and leased afresh."""
        delivered: list[OutboxRow] = []
        for place, row in enumerate(batch):
            if delivered and self._clock.now_ms() + self._renew_seconds * 1000 >= lease[0]:
                break
            if not await self.attempt(row):
                await self._outbox.release(batch[place + 1 :])
                return delivered, False
            delivered.append(row)
        return delivered, True

    async def attempt(self, row: OutboxRow) -> bool:
        """One attempt at a leased row; whether it was delivered. A failure is recorded
        here; a delivery by the caller, with its batch."""
        self._attempted_at = self._clock.now_ms()
        error = await self._send(row)
        now = self._clock.now_ms()
        if error is None:
            self._metrics.webhooks_delivered.inc()
            self._metrics.webhook_latency.observe((now - row.created_at) / 1000)
            self._receiver_failing = False
            # A row that failed before is through: what waits for its retry may go too.
            # (Not on any success after a failure: a row the receiver refuses while it
            # takes others would then be retried as often as others are delivered.)
            if row.attempts and await self._outbox.retry_waiting(now):
                self._wakeup.set()
            return True
        if not error.startswith("HTTP 4"):  # a 4xx refuses this row, not every row
            self._receiver_failing = True
        next_attempt = self.next_attempt(row, now)
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
            asyncio.get_running_loop().call_later((next_attempt - now) / 1000, self._wakeup.set)
            self._log.info("Webhook %s of %s failed (%s); retrying", row.id, row.stream, error)
        return False

    def next_attempt(self, row: OutboxRow, now: int) -> int | None:
        """When to try a row that just failed again; None when its time is up."""
        if now >= row.retry_until:
            return None
        delay_ms = int(self._backoff.delay(row.attempts + 1) * 1000)
        return min(now + delay_ms, row.retry_until)

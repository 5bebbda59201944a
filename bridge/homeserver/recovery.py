"""Closing the gaps the homeserver's push leaves after a fault (docs/reliability.md).

Two faults make Synapse's appservice push late or lossy, and the bridge mends both:

- The bridge could not store a transaction (its database was cut) and answered 5xx: Synapse
  marks the appservice down and retries with a backoff that grows to minutes. The bridge
  tries to store the refused transactions itself every half second, oldest first; once that
  works, it pings the homeserver, which goes on at once. Synapse marks the appservice down
  only after a failed send, in the background, so its next transaction can come before the
  refused one is re-sent (seen in tests/chaos/test_database_cut.py): the intake stores what
  was refused before anything newer (`store_refused`), so a room's events keep their order.
  And a transaction Synapse makes while its recoverer is finishing is stored as unsent and
  pushed only at its next outage, maybe never: a little after storing works again, and
  once more later, the bridge reads the active rooms back as below (`read_back_refused`).
- Synapse restarted: events it had queued in memory behind an in-flight transaction are
  never sent (element-hq/synapse#11637). When the homeserver answers again after not
  answering, the bridge reads the latest events of every active room back to shortly
  before the outage and stores those it never got; the inbox dedupes by event id, so
  reading an event twice is harmless. A recovered event is notified after any event that
  reached the bridge before it (its webhook still carries the homeserver's timestamp).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError
from appservice.transactions import Transaction, parse_room_event
from bridge.runtime.backoff import Backoff, retry_until_done
from bridge.runtime.clock import Clock
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from policy.ids import RoomId

from .inbox import InboxStore

# Events reach Synapse's in-memory queue at most this long before the outage was noticed:
# the appservice request timeout plus the watch's interval, with room to spare.
OUTAGE_MARGIN_MS = 5 * 60 * 1000
PAGE_SIZE = 100
MAX_PAGES = 20  # per room: the newest 2,000 events at most
CATCH_UP_CONCURRENCY = 8
# A fixed, short interval for storing: Synapse's own retries are already spaced out.
STORE_RETRY = Backoff(initial=0.5, maximum=0.5)
# Synapse's ping makes it re-send at once only if its recoverer exists, and not while the
# recoverer's own retry is in flight (502 AlreadyCalled; if that retry fails, its next one
# is 4 s or more away): a refused ping is tried again soon.
PING_RETRY = Backoff(initial=0.25, maximum=30.0)
# A push that failed just before the ping answered (to a process not listening yet, or
# whose database was cut) can start the recoverer after it, on its first 2 s timer:
# pinging again this long after the answer (each delay from the one before) ends that wait.
PING_AGAIN_SECONDS = (0.5, 1.0)
# Reading the active rooms back after a refusal, this long after the homeserver was asked to
# go on (each delay from the one before): once its recoverer has ended (the first), and once
# more for a recoverer still sending a long backlog then (the second).
READ_BACK_AFTER_SECONDS = (3.0, 30.0)
# A read-back that fails is tried again at these waits, this many times in all.
READ_BACK_RETRY = Backoff(initial=1.0, maximum=30.0)
READ_BACK_ATTEMPTS = 8


class Recovery:
    def __init__(
        self,
        bot: MatrixBot,
        inbox: InboxStore,
        active_rooms: Callable[[], Awaitable[list[RoomId]]],
        appservice_id: str,
        watch_seconds: float,
        clock: Clock,
        metrics: Metrics,
        wakeup: Wakeup,
    ) -> None:
        self._bot = bot
        self._inbox = inbox
        self._active_rooms = active_rooms
        self._appservice_id = appservice_id
        self._watch_seconds = watch_seconds
        self._clock = clock
        self._metrics = metrics
        self._wakeup = wakeup
        self._store_failed = asyncio.Event()
        self._pinged = asyncio.Event()
        self._resumed = asyncio.Event()
        # The transactions not stored yet, oldest first, by transaction id.
        self._refused: dict[str, Transaction] = {}
        self._refusals = 0  # so far: a read-back round ends when another comes
        self._resumed_at_ms: int | None = None  # when the homeserver was last asked to go on
        self._log = logging.getLogger("bridge.homeserver.recovery")

    def store_failed(self, txn: Transaction) -> None:
        """Called when a homeserver transaction could not be stored."""
        self._refusals += 1
        self._refused.setdefault(txn.txn_id, txn)
        self._store_failed.set()

    async def store_refused(self) -> None:
        """Store the transactions refused so far, oldest first; raises while storing fails.
        A transaction stored twice is harmless: the inbox dedupes by event id."""
        while self._refused:
            txn_id, txn = next(iter(self._refused.items()))
            await self._inbox.store_transaction(txn)
            self._refused.pop(txn_id, None)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as loops:  # one failing stops the others
            loops.create_task(self._resume_pushes())
            loops.create_task(self._ping_again())
            loops.create_task(self._read_back_refused())
            if self._watch_seconds:
                loops.create_task(self._watch_homeserver())

    async def ask_to_resend(self) -> None:
        """Ping the homeserver until it answers (it then re-sends what it holds for us at
        once), and again shortly after (PING_AGAIN_SECONDS)."""
        await retry_until_done(
            lambda: self._bot.ping(self._appservice_id),
            PING_RETRY,
            self._clock,
            self._log,
            "ask the homeserver to re-send",
        )
        self._pinged.set()

    async def _ping_again(self) -> None:
        while True:
            await self._pinged.wait()
            self._pinged.clear()
            for delay in PING_AGAIN_SECONDS:
                await self._clock.sleep(delay)
                try:
                    await self._bot.ping(self._appservice_id)
                except Exception as e:  # the next ping may do; this loop must go on
                    self._log.debug("A follow-up ping failed: %s", e)

    async def _resume_pushes(self) -> None:
        while True:
            await self._store_failed.wait()
            self._store_failed.clear()  # a failure from now on comes round again
            await self.resume_pushes()

    async def resume_pushes(self) -> None:
        """Store the refused transaction, then ask the homeserver to go on at once (and read
        the active rooms back later, READ_BACK_AFTER_SECONDS)."""
        await retry_until_done(
            self.store_refused,
            STORE_RETRY,
            self._clock,
            self._log,
            "store the refused transaction",
        )
        self._wakeup.set()
        await self.ask_to_resend()
        self._resumed_at_ms = self._clock.now_ms()
        self._resumed.set()
        self._log.info("Storing works again; the homeserver was asked to go on")

    async def _read_back_refused(self) -> None:
        while True:
            await self._resumed.wait()
            await self.read_back_refused()

    async def read_back_refused(self) -> None:
        """Read the active rooms back to shortly before the homeserver was last asked to go
        on, at each of READ_BACK_AFTER_SECONDS after it: a transaction stranded by the end of
        its recoverer is made after that (those made before are re-sent by the recoverer). A
        refusal meanwhile ends the round: its outage's recoverer pushes what was stranded,
        and its own resume starts another round."""
        self._resumed.clear()
        if self._resumed_at_ms is None:
            return
        since_ms, refusals = self._resumed_at_ms - OUTAGE_MARGIN_MS, self._refusals
        for delay in READ_BACK_AFTER_SECONDS:
            await self._clock.sleep(delay)
            for attempt in range(1, READ_BACK_ATTEMPTS + 1):
                if self._refusals != refusals:
                    return
                try:
                    await self.catch_up(since_ms)
                    break
                except Exception as e:  # the homeserver or the database: try again
                    if attempt == READ_BACK_ATTEMPTS:
                        self._log.error(
                            "Gave up reading the active rooms back (%s): an event the"
                            " homeserver stranded waits for its next outage",
                            e,
                        )
                        return
                    wait = READ_BACK_RETRY.delay(attempt)
                    self._log.warning(
                        "Could not read the active rooms back (%s); retrying in %.1fs", e, wait
                    )
                    await self._clock.sleep(wait)

    async def _watch_homeserver(self) -> None:
        last_up: int | None = None  # when the homeserver last answered before an outage
        down = False
        while True:
            now = self._clock.now_ms()
            try:
                await self._bot.versions()
            except (HomeserverUnavailable, MatrixError) as e:
                if not down:
                    self._log.warning("The homeserver does not answer (%s)", e)
                down = True
            else:
                try:
                    if down and last_up is not None:
                        await self.catch_up(last_up - OUTAGE_MARGIN_MS)
                    down, last_up = False, now
                except Exception:
                    self._log.exception("Could not catch up after the outage; trying again")
            await self._clock.sleep(self._watch_seconds)

    async def catch_up(self, since_ms: int) -> int:
        """Store every active room's events since ``since_ms`` that the bridge never got;
        how many. Raises HomeserverUnavailable, once every other room was read, if a room
        could not be (try again)."""
        rooms = iter(await self._active_rooms())
        found = 0
        unreadable: list[HomeserverUnavailable] = []

        async def worker() -> None:
            nonlocal found
            for room_id in rooms:  # shared: each room is read by one worker
                try:
                    # Awaited first: `found += await ...` would read `found` before the
                    # await and lose what the other workers added meanwhile.
                    stored = await self.catch_up_room(room_id, since_ms)
                    found += stored
                except MatrixError as e:  # the bot left, or the room is gone: nothing to read
                    self._log.warning("Could not read %s's timeline: %s", room_id, e)
                except HomeserverUnavailable as e:  # the other rooms are read all the same
                    unreadable.append(e)

        try:
            async with asyncio.TaskGroup() as workers:  # a database error stops them all
                for _ in range(CATCH_UP_CONCURRENCY):
                    workers.create_task(worker())
        except ExceptionGroup as failed:  # the first error says what failed
            raise failed.exceptions[0] from failed
        if found:
            self._log.warning("Stored %d events the homeserver never sent", found)
            self._metrics.events_read_back.inc(found)
            self._wakeup.set()
        else:
            self._log.info("No event was missing from the rooms read back")
        if unreadable:
            raise HomeserverUnavailable(f"{len(unreadable)} rooms not read: {unreadable[0]}")
        return found

    async def catch_up_room(self, room_id: RoomId, since_ms: int) -> int:
        missing: list[dict] = []
        token = None
        for _ in range(MAX_PAGES):
            chunk, token = await self._bot.messages(room_id, token, PAGE_SIZE)
            events = [e for e in chunk if isinstance(e, dict)]
            if not events:
                break
            oldest = min(_timestamp(e) for e in events)
            known = await self._inbox.known_since(room_id, oldest)
            missing.extend(e for e in events if e.get("event_id") not in known)
            if token is None or oldest < since_ms:
                break
        if missing:
            txn_id = f"catch-up:{room_id}:{self._clock.now_ms()}"
            parsed = [parse_room_event({"room_id": room_id, **e}) for e in reversed(missing)]
            await self._inbox.store_transaction(Transaction(txn_id, parsed, []))
        return len(missing)


def _timestamp(event: dict) -> int:
    ts = event.get("origin_server_ts")
    return ts if isinstance(ts, int) else 0

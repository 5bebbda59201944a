"""Closing the gaps the homeserver's push leaves after a fault (docs/reliability.md).

Two faults make Synapse's appservice push late or lossy, and the bridge mends both:

- The bridge could not store a transaction (its database was cut) and answered 5xx: Synapse
  marks the appservice down and retries with a backoff that grows to minutes. The bridge
  tries to store the refused transaction itself every half second; once that works, it pings
  the homeserver, which goes on at once.
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
import time
from collections.abc import Awaitable, Callable

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError
from appservice.transactions import Transaction, parse_room_event
from bridge.homeserver.inbox import EventStore
from bridge.runtime.metrics import Metrics

# Events reach Synapse's in-memory queue at most this long before the outage was noticed:
# the appservice request timeout plus the watch's interval, with room to spare.
OUTAGE_MARGIN_MS = 5 * 60 * 1000
PAGE_SIZE = 100
MAX_PAGES = 20  # per room: the newest 2,000 events at most
CATCH_UP_CONCURRENCY = 8
RETRY_MAX_SECONDS = 30.0
STORE_RETRY_SECONDS = 0.5


class Recovery:
    def __init__(
        self,
        bot: MatrixBot,
        events: EventStore,
        active_rooms: Callable[[], Awaitable[list[str]]],
        appservice_id: str,
        watch_seconds: float,
        metrics: Metrics,
        on_stored: Callable[[], None],
    ) -> None:
        self._bot = bot
        self._events = events
        self._active_rooms = active_rooms
        self._appservice_id = appservice_id
        self._watch_seconds = watch_seconds
        self._metrics = metrics
        self._on_stored = on_stored
        self._store_failed = asyncio.Event()
        self._refused: Transaction | None = None  # the latest transaction not stored
        self._log = logging.getLogger("bridge.recovery")

    def store_failed(self, txn: Transaction) -> None:
        """Called when a homeserver transaction could not be stored."""
        self._refused = txn
        self._store_failed.set()

    async def run(self) -> None:
        watching = [self._watch_homeserver()] if self._watch_seconds else []
        await asyncio.gather(self._resume_pushes(), *watching)

    async def _resume_pushes(self) -> None:
        while True:
            await self._store_failed.wait()
            self._store_failed.clear()  # a failure from now on comes round again
            # A fixed, short interval: Synapse's own retries are already spaced out.
            await _until_done(
                self._store_refused,
                self._log,
                "store the refused transaction",
                STORE_RETRY_SECONDS,
            )
            self._on_stored()
            await _until_done(
                lambda: self._bot.ping(self._appservice_id),
                self._log,
                "ask the homeserver to re-send",
            )
            self._log.info("Storing works again; the homeserver was asked to go on")

    async def _store_refused(self) -> None:
        assert self._refused is not None
        await self._events.store_transaction(self._refused)

    async def _watch_homeserver(self) -> None:
        last_up: int | None = None  # when the homeserver last answered before an outage
        down = False
        while True:
            now = int(time.time() * 1000)
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
            await asyncio.sleep(self._watch_seconds)

    async def catch_up(self, since_ms: int) -> int:
        """Store every active room's events since ``since_ms`` that the bridge never got;
        how many. Raises HomeserverUnavailable if a room could not be read (try again)."""
        rooms = iter(await self._active_rooms())
        found = 0

        async def worker() -> None:
            nonlocal found
            for room_id in rooms:  # shared: each room is read by one worker
                try:
                    found += await self.catch_up_room(room_id, since_ms)
                except MatrixError as e:  # the bot left, or the room is gone: nothing to read
                    self._log.warning("Could not read %s's timeline: %s", room_id, e)

        await asyncio.gather(*(worker() for _ in range(CATCH_UP_CONCURRENCY)))
        if found:
            self._log.warning("Stored %d events the homeserver never sent", found)
            self._metrics.events_read_back.inc(found)
            self._on_stored()
        else:
            self._log.info("No event was missing after the homeserver's outage")
        return found

    async def catch_up_room(self, room_id: str, since_ms: int) -> int:
        missing: list[dict] = []
        token = None
        for _ in range(MAX_PAGES):
            chunk, token = await self._bot.messages(room_id, token, PAGE_SIZE)
            events = [e for e in chunk if isinstance(e, dict)]
            if not events:
                break
            oldest = min(_timestamp(e) for e in events)
            known = await self._events.known_since(room_id, oldest)
            missing.extend(e for e in events if e.get("event_id") not in known)
            if token is None or oldest < since_ms:
                break
        if missing:
            txn_id = f"catch-up:{room_id}:{time.time_ns()}"
            parsed = [parse_room_event({"room_id": room_id, **e}) for e in reversed(missing)]
            await self._events.store_transaction(Transaction(txn_id, parsed, []))
        return len(missing)


def _timestamp(event: dict) -> int:
    ts = event.get("origin_server_ts")
    return ts if isinstance(ts, int) else 0


async def _until_done(
    attempt: Callable[[], Awaitable[object]],
    log: logging.Logger,
    what: str,
    max_delay: float = RETRY_MAX_SECONDS,
) -> None:
    delay = min(1.0, max_delay)
    while True:
        try:
            await attempt()
            return
        except Exception as e:
            log.warning("Could not %s (%s); retrying in %.0fs", what, e, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)

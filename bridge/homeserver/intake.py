"""What the bridge answers to the homeserver's calls: store each transaction, then say so.

Implements `appservice.routes.HomeserverHandler`. A lone message whose sender's last message
the inbox worker worked out is worked out as it arrives, in the statement that stores it
(`bridge.homeserver.arrivals`). Any other stored transaction wakes the inbox worker (a
lone event that nothing of its room waits before is handed to it, read back by the INSERT);
one that could not be stored goes to recovery (which keeps trying to store it, then asks the
homeserver to go on) and the route answers 500, so Synapse keeps it and re-sends it. Until
then, every newer transaction stores the refused ones first: Synapse may send its next
transaction before re-sending a refused one, and a room's events must keep their order.
"""

from __future__ import annotations

from typing import Protocol

from appservice.transactions import MalformedEvent, Transaction
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup
from policy.ids import UserId

from .inbox import InboxStore, Pending, ReadAlong


class StoreFailures(Protocol):
    """Who takes over a transaction that could not be stored (`recovery.Recovery`)."""

    def store_failed(self, txn: Transaction) -> None: ...

    async def store_refused(self) -> None: ...


class StoredEvents(Protocol):
    """Who works out a lone message as it arrives, or takes a lone event read back by the
    INSERT that stored it (`InboxWorker`)."""

    read_along: ReadAlong

    async def work_out_arriving(self, txn: Transaction) -> bool: ...

    def take_stored(self, pending: Pending) -> bool: ...


class HomeserverIntake:
    def __init__(
        self,
        inbox: InboxStore,
        bot: UserId,
        metrics: Metrics,
        wakeup: Wakeup,
        recovery: StoreFailures,
        stored: StoredEvents | None = None,
    ) -> None:
        self._inbox = inbox
        self._bot = bot
        self._metrics = metrics
        self._wakeup = wakeup
        self._recovery = recovery
        self._stored = stored
        # Labelled once: prometheus_client's `labels` costs more than the count itself.
        self._transactions_stored = metrics.transactions.labels("stored")
        self._events_pending = metrics.events.labels("pending")
        self._events_dead = metrics.events.labels("dead")

    async def store_transaction(self, txn: Transaction) -> None:
        try:
            await self._recovery.store_refused()
            if self._stored and await self._stored.work_out_arriving(txn):
                self._transactions_stored.inc()
                return  # stored and worked out: nothing left for the worker
            along = self._stored.read_along if self._stored else None
            ready = await self._inbox.store_transaction(txn, along)
        except Exception:
            self._metrics.transactions.labels("failed").inc()
            self._recovery.store_failed(txn)
            raise
        self._transactions_stored.inc()
        # Counts arrivals, duplicates of a re-sent transaction included.
        dead = sum(isinstance(event, MalformedEvent) for event in txn.events)
        if len(txn.events) > dead:
            self._events_pending.inc(len(txn.events) - dead)
        if dead:
            self._events_dead.inc(dead)
        if txn.receipts:
            self._metrics.receipts.inc(len(txn.receipts))
        rooms = {event.room_id for event in txn.events} | {r.room_id for r in txn.receipts}
        if ready is not None and self._stored and self._stored.take_stored(ready):
            rooms.discard(ready.events[0].room_id)  # handed over: the worker need not look
        if rooms:
            self._wakeup.set(rooms)

    async def query_user(self, user_id: str) -> bool:
        # The bot is registered when the bridge connects; no other user lives in our namespace.
        return user_id == self._bot

    async def query_alias(self, alias: str) -> bool:
        # Rooms come from the marketplace API, never from someone asking for an alias.
        return False

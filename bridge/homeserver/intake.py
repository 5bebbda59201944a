"""What the bridge does with the homeserver's calls: store transactions, answer queries."""

from __future__ import annotations

from collections.abc import Callable

from appservice.transactions import MalformedEvent, Transaction
from bridge.homeserver.inbox import EventStore
from bridge.runtime.metrics import Metrics


class HomeserverInbound:
    """Implements `appservice.routes.HomeserverHandler` for the bridge."""

    def __init__(
        self,
        events: EventStore,
        bot_mxid: str,
        metrics: Metrics,
        on_stored: Callable[[], None] = lambda: None,
        on_store_failed: Callable[[Transaction], None] = lambda txn: None,
    ) -> None:
        self._events = events
        self._bot_mxid = bot_mxid
        self._metrics = metrics
        self._on_stored = on_stored
        self._on_store_failed = on_store_failed

    async def store_transaction(self, txn: Transaction) -> None:
        try:
            await self._events.store_transaction(txn)
        except Exception:
            self._metrics.transactions.labels("failed").inc()
            self._on_store_failed(txn)
            raise
        self._metrics.transactions.labels("stored").inc()
        # Counts arrivals, duplicates of a re-sent transaction included.
        dead = sum(isinstance(event, MalformedEvent) for event in txn.events)
        self._metrics.events.labels("pending").inc(len(txn.events) - dead)
        self._metrics.events.labels("dead").inc(dead)
        self._metrics.receipts.inc(len(txn.receipts))
        self._on_stored()

    async def query_user(self, user_id: str) -> bool:
        # The bot is registered when the bridge connects; no other user lives in our namespace.
        return user_id == self._bot_mxid

    async def query_alias(self, alias: str) -> bool:
        # Rooms come from the marketplace API, never from someone asking for an alias.
        return False

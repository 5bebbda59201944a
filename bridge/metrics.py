"""Prometheus metrics, registered in a registry owned by the composition root."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.transactions = Counter(
            "bridge_homeserver_transactions",
            "Homeserver transactions handled, by result (stored or failed)",
            ["result"],
            registry=registry,
        )
        self.events = Counter(
            "bridge_inbox_events_received",
            "Room events received from the homeserver, by status on arrival",
            ["status"],
            registry=registry,
        )
        self.receipts = Counter(
            "bridge_read_receipts_received",
            "Main-timeline read receipts received from the homeserver",
            registry=registry,
        )

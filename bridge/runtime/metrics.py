"""Prometheus metrics, registered in a registry owned by the composition root."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.events_read_back = Counter(
            "bridge_events_read_back",
            "Room events the homeserver never sent, read back from room timelines",
            registry=registry,
        )
        self.inbox_lag = Gauge(
            "bridge_inbox_lag_seconds",
            "Age of the oldest room event not yet turned into notifications",
            registry=registry,
        )
        self.webhooks_queued = Counter(
            "bridge_webhooks_queued", "Notifications added to the outbox", registry=registry
        )
        self.webhooks_delivered = Counter(
            "bridge_webhooks_delivered", "Notifications delivered (2xx)", registry=registry
        )
        self.webhooks_retried = Counter(
            "bridge_webhooks_retried", "Failed attempts that will be retried", registry=registry
        )
        self.webhooks_dead = Counter(
            "bridge_webhooks_dead_lettered", "Notifications given up on", registry=registry
        )
        self.webhook_latency = Histogram(
            "bridge_webhook_delivery_seconds",
            "From queued to delivered",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600),
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "bridge_outbox_depth", "Notifications waiting for delivery", registry=registry
        )
        self.policy_violations = Counter(
            "bridge_policy_violations",
            "Parties' events that broke a content rule, by rule",
            ["rule"],
            registry=registry,
        )
        self.policy_actions = Counter(
            "bridge_policy_actions",
            "Planned policy bot actions carried out, by kind and outcome (done or failed)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.first_response = Histogram(
            "bridge_first_response_seconds",
            "From a party's message that starts an exchange to the other party's first reply,"
            " by the role of who replied (buyer or seller)",
            ["role"],
            buckets=(
                60,
                300,
                900,
                1800,
                3600,
                3 * 3600,
                6 * 3600,
                12 * 3600,
                86400,
                2 * 86400,
                7 * 86400,
            ),
            registry=registry,
        )
        self.follow_ups = Counter(
            "bridge_follow_ups",
            "Reminders, nudges and escalations that came due, by kind and outcome (fired, or"
            " skipped because the message was read or answered, or the room moved on)",
            ["kind", "outcome"],
            registry=registry,
        )

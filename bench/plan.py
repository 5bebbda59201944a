"""How much each benchmark does: the full run (`make bench`) and the smoke run (in make test)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scale:
    # 1. message -> webhook
    messages: int = 1000
    message_rooms: int = 20
    calibration_messages: int = 300  # sent as fast as Synapse takes them, to find its rate
    # 2. room provisioning (ours, then the same Synapse calls made directly)
    provisioned_rooms: int = 100
    provisioning_concurrency: int = 8
    # 3. payment -> open
    payments: int = 50
    # 4. ingest: homeserver transactions of 100 events
    ingest_transactions: int = 200
    ingest_concurrency: int = 4
    # 5. webhook delivery from a backlog
    deliveries: int = 5000
    delivery_rooms: int = 100
    # 6. scale and memory: a restart over seeded_transactions rooms (restart_changes of them
    # changed while it was stopped), lookups over lookup_transactions, memory over active_rooms
    seeded_transactions: int = 100_000
    restart_changes: int = 100
    lookup_transactions: int = 1_000_000
    active_rooms: int = 10_000
    lookups: int = 2000
    # 7. judging one message: times each costly input is judged
    judge_repeats: int = 5
    # 8. the web chat: messages of history, fresh page loads measured
    webchat_history: int = 200
    webchat_runs: int = 5
    # 9. follow-ups: open rooms (one pending follow-up each), due-query calls, messages whose
    # follow-ups are scheduled and cancelled
    follow_up_rooms: int = 100_000
    follow_up_queries: int = 500
    follow_up_messages: int = 2000
    # 10. scale-out: messages per run (one replica, then two), rooms they go to at once
    scale_out_messages: int = 2000
    scale_out_rooms: int = 20
    # 11. retention: messages a year (rooms of about 50), pruned; then a second year on top
    retention_messages: int = 1_000_000
    # 12. the policy bot's actions: warnings planned at once, rooms they are spread over
    actions: int = 200
    action_rooms: int = 20


FULL = Scale()
SMOKE = Scale(
    judge_repeats=1,
    webchat_history=20,
    webchat_runs=1,
    messages=20,
    calibration_messages=20,
    message_rooms=2,
    provisioned_rooms=4,
    provisioning_concurrency=2,
    payments=2,
    ingest_transactions=3,
    deliveries=200,
    delivery_rooms=10,
    seeded_transactions=500,
    restart_changes=10,
    lookup_transactions=1000,
    active_rooms=100,
    lookups=50,
    follow_up_rooms=1000,
    follow_up_queries=20,
    follow_up_messages=50,
    scale_out_messages=40,
    scale_out_rooms=4,
    retention_messages=5000,
    actions=4,
    action_rooms=2,
)

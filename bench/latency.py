"""1. Message -> webhook: what the bridge adds to what Synapse already costs.

    buyer sends (fixed rate, round-robin over open rooms)
      -> Synapse -> recording appservice (baseline: notes the event's arrival)
                 -> the bridge: stored, processed, queued, signed, POSTed -> our receiver
    added latency = webhook arrival - the recorder's arrival of the same event

Synapse pushes to both appservices from the same transaction-sending loop, so the difference
is the bridge's own work (store, inbox, outbox, signature, HTTP) on shared cores.
"""

from __future__ import annotations

import asyncio
import time

from nio import RoomSendResponse

from .env import Env
from .market import Market, market
from .plan import Scale
from .report import Figure, Result, at_most, percentiles

DEADLINE_S = 60.0


async def run(env: Env, scale: Scale) -> Result:
    result = Result("latency")
    async with market(env) as m:
        rooms = [(await m.open_room())["room_id"] for _ in range(scale.message_rooms)]
        # Warm up: one message per room, so Synapse pushes to the new bridge promptly.
        await _send_and_wait(m, rooms, len(rooms), rate=10.0)
        meter = env.meter(bridge=m.pid)
        meter.start()
        sent = await _send_and_wait(m, rooms, scale.messages, scale.messages_per_second)
        result.cpu_seconds = meter.stop()
        delivered: dict[str, float] = {}
        for attempt in m.hooks.attempts:  # the first arrival of each message's webhook
            if attempt.body["type"] == "message.created":
                delivered.setdefault(attempt.body["data"]["event_id"], attempt.received_at)
        added = [(delivered[e] - env.recorder.arrivals[e]) * 1000 for e in sent]
        pushed = [(env.recorder.arrivals[e] - at) * 1000 for e, at in sent.items()]
    stats = percentiles(added)
    result.figures = [
        at_most("added latency p99", stats["p99"], "ms", 10),
        Figure("added latency p50", stats["p50"], "ms"),
        Figure("added latency p95", stats["p95"], "ms"),
        Figure("added latency max", stats["max"], "ms"),
        Figure("Synapse send -> appservice p50", percentiles(pushed)["p50"], "ms"),
        Figure("messages", len(sent), "msgs"),
    ]
    result.notes = (
        f"{len(sent)} messages at {scale.messages_per_second:g}/s over {len(rooms)} rooms; "
        "baseline: a recording appservice on the same Synapse"
    )
    return result


async def _send_and_wait(m: Market, rooms: list[str], count: int, rate: float) -> dict[str, float]:
    """Send ``count`` messages at a fixed rate; wait until each reached both appservices.
    Returns each event id with the time its send started."""
    sent: dict[str, float] = {}
    start = time.monotonic()

    async def one(n: int) -> None:
        started = time.time()
        response = await m.buyer.room_send(
            rooms[n % len(rooms)], "m.room.message", {"msgtype": "m.text", "body": f"offer {n}"}
        )
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        sent[response.event_id] = started

    tasks = []
    for n in range(count):
        # A fixed schedule, not a wait for the previous send: the rate holds however slow.
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        delivered = {d.body["data"].get("event_id") for d in m.hooks.attempts}
        missing = [e for e in sent if e not in delivered or e not in m.env.recorder.arrivals]
        if not missing:
            return sent
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} messages never reached both appservices")
        await asyncio.sleep(0.02)

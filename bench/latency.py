"""1. Message -> webhook: what the bridge adds to what Synapse already costs, at a load
calibrated to this machine.

    calibrate: one sender per room, each sending as soon as its last send returned, until
               `calibration_messages` reached the recording appservice -> the rate Synapse
               sustains here (with the bridge attached, as in production)
    measure:   the buyer sends at a quarter of that rate (a fixed schedule, round-robin)
      -> Synapse -> recording appservice (baseline: notes the event's arrival)
                 -> the bridge: stored, processed, queued, signed, POSTed -> our receiver
    added latency = webhook arrival - the recorder's arrival of the same event

Synapse pushes to both appservices from the same transaction-sending loop, so the difference
is the bridge's own work (store, inbox, outbox, signature, HTTP) on shared cores. A fixed rate
(the first version offered 20 a second) saturates Synapse on a slower processor and measures
its queue, not the bridge; a quarter of what it sustains leaves it headroom on any machine.
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
LOAD_SHARE = 0.25  # of the rate Synapse sustains
ADDED_P99_MS = 5.0
CPU_SHARE = 0.10  # the bridge's CPU per message, of Synapse's for the same messages


async def run(env: Env, scale: Scale) -> Result:
    result = Result("latency")
    async with market(env) as m:
        rooms = [(await m.open_room())["room_id"] for _ in range(scale.message_rooms)]
        # Warm up: one message per room, so Synapse pushes to the new bridge promptly.
        await _send_and_wait(m, rooms, len(rooms), rate=10.0)
        sustained = await sustained_rate(m, rooms, scale.calibration_messages)
        rate = sustained * LOAD_SHARE
        meter = env.meter(bridge=m.pid)
        meter.start()
        sent = await _send_and_wait(m, rooms, scale.messages, rate)
        result.cpu_seconds = meter.stop()
        result.work = (len(sent), "message")
        delivered: dict[str, float] = {}
        for attempt in m.hooks.attempts:  # the first arrival of each message's webhook
            if attempt.body["type"] == "message.created":
                delivered.setdefault(attempt.body["data"]["event_id"], attempt.received_at)
        added = [(delivered[e] - env.recorder.arrivals[e]) * 1000 for e in sent]
        pushed = percentiles([(env.recorder.arrivals[e] - at) * 1000 for e, at in sent.items()])
    stats = percentiles(added)
    per_message = {name: s * 1000 / len(sent) for name, s in result.cpu_seconds.items()}
    result.figures = [
        Figure("Synapse sustains (calibration)", sustained, "msgs/s"),
        Figure("offered load", rate, "msgs/s"),
        at_most("added latency p99", stats["p99"], "ms", ADDED_P99_MS),
        Figure("added latency p50", stats["p50"], "ms"),
        Figure("added latency p95", stats["p95"], "ms"),
        Figure("added latency max", stats["max"], "ms"),
        Figure("baseline: Synapse -> appservice p50", pushed["p50"], "ms"),
        Figure("baseline: Synapse -> appservice p99", pushed["p99"], "ms"),
        Figure("bridge CPU per message", per_message["bridge"], "ms"),
        Figure("Synapse CPU per message", per_message["synapse"], "ms"),
        at_most(
            "bridge CPU / Synapse CPU",
            per_message["bridge"] / per_message["synapse"],
            "ratio",
            CPU_SHARE,
        ),
        Figure("messages", len(sent), "msgs"),
    ]
    result.notes = (
        f"{len(sent)} messages at {rate:.1f}/s ({LOAD_SHARE:g} of the {sustained:.1f}/s Synapse "
        f"sustained in calibration) over {len(rooms)} rooms; baseline: a recording appservice "
        "on the same Synapse; CPU measured over the timed messages only"
    )
    return result


async def sustained_rate(m: Market, rooms: list[str], count: int) -> float:
    """Messages a second Synapse takes in and pushes out here: one sender per room, each
    sending again as soon as its previous send returned, timed until the recording appservice
    has every message. The bridge's own backlog is drained before this returns."""
    sent: dict[str, float] = {}
    next_number = iter(range(count))

    async def sender(room_id: str) -> None:
        for n in next_number:  # shared: each number is sent once
            sent[await _send(m, room_id, n)] = time.time()

    started = time.time()
    await asyncio.gather(*(sender(room_id) for room_id in rooms))
    await _until_arrived(m, sent)
    finished = max(m.env.recorder.arrivals[e] for e in sent)
    return count / max(finished - started, 1e-3)


async def _send(m: Market, room_id: str, n: int) -> str:
    response = await m.buyer.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": f"offer {n}"}
    )
    if not isinstance(response, RoomSendResponse):
        raise RuntimeError(f"send failed: {response}")
    return response.event_id


async def _send_and_wait(m: Market, rooms: list[str], count: int, rate: float) -> dict[str, float]:
    """Send ``count`` messages at a fixed rate; wait until each reached both appservices.
    Returns each event id with the time its send started."""
    sent: dict[str, float] = {}
    start = time.monotonic()

    async def one(n: int) -> None:
        started = time.time()
        sent[await _send(m, rooms[n % len(rooms)], n)] = started

    tasks = []
    for n in range(count):
        # A fixed schedule, not a wait for the previous send: the rate holds however slow.
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    await _until_arrived(m, sent)
    return sent


async def _until_arrived(m: Market, sent: dict[str, float]) -> None:
    """Until every sent event reached the recorder and its webhook reached our receiver."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        delivered = {d.body["data"].get("event_id") for d in m.hooks.attempts}
        missing = [e for e in sent if e not in delivered or e not in m.env.recorder.arrivals]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} messages never reached both appservices")
        await asyncio.sleep(0.02)

"""3. Payment -> open: from the marketplace's payment call to a party's message accepted.

POST /api/v1/transactions/{id}/payment   (the bridge lowers events_default to 0)
  -> the seller sends at once; a refusal (still locked) is retried until accepted
"""

from __future__ import annotations

import time

from nio import RoomSendResponse

from .env import Env
from .market import market
from .plan import Scale
from .report import Figure, Result, percentiles

DEADLINE_S = 10.0


async def run(env: Env, scale: Scale) -> Result:
    result = Result("payment")
    timings: list[float] = []
    refusals = 0
    async with market(env) as m:
        rooms = []
        for _ in range(scale.payments):
            created = await m.create()
            for party in (m.buyer, m.seller):
                await party.join(created["room_id"])
            rooms.append(created)
        meter = env.meter(bridge=m.pid)
        meter.start()
        for created in rooms:
            started = time.perf_counter()
            path = f"/transactions/{created['transaction_id']}/payment"
            status, body = await m.api.call("POST", path)
            if status != 200:
                raise RuntimeError(f"payment answered {status}: {body}")
            while True:
                sent = await m.seller.room_send(
                    created["room_id"], "m.room.message", {"msgtype": "m.text", "body": "paid!"}
                )
                if isinstance(sent, RoomSendResponse):
                    break
                refusals += 1
                if time.perf_counter() - started > DEADLINE_S:
                    raise RuntimeError(f"still refused after payment: {sent}")
            timings.append((time.perf_counter() - started) * 1000)
        result.cpu_seconds = meter.stop()
        result.work = (scale.payments, "payment")
        sends = []  # the baseline: the same send in the same rooms, open already
        for created in rooms:
            started = time.perf_counter()
            sent = await m.seller.room_send(
                created["room_id"], "m.room.message", {"msgtype": "m.text", "body": "again"}
            )
            if not isinstance(sent, RoomSendResponse):
                raise RuntimeError(f"a send in an open room failed: {sent}")
            sends.append((time.perf_counter() - started) * 1000)
    stats, baseline = percentiles(timings), percentiles(sends)
    result.figures = [
        Figure("payment -> message accepted p99", stats["p99"], "ms"),
        Figure("payment -> message accepted p50", stats["p50"], "ms"),
        Figure("baseline: a send in an open room p99", baseline["p99"], "ms"),
        Figure("baseline: a send in an open room p50", baseline["p50"], "ms"),
        Figure("refused sends after the 200", refusals, "sends"),
    ]
    result.notes = (
        f"{len(timings)} payments, one after another; baseline: one more send in each room"
    )
    return result

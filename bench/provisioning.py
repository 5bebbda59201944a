"""2. Room provisioning: transaction rooms per second through our API, against the same
Synapse calls made directly by an appservice client, in the same run.

    ours:   POST /api/v1/transactions -> parties looked up, room created from its plan with
            both invites, stored, the "created" notice posted
    direct: the same calls with the bridge's token: two profile lookups, createRoom (the
            same plan and invites), the notice

Both run with the same concurrency, in batches of three rooms a slot ordered ours, direct,
direct, ours, repeated: a Synapse that slows down as its database grows, or a load that comes
and goes, weighs on both alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import ClientSession

from policy.notices import Milestone, transaction_notice
from policy.rooms import Participants, RoomKind, plan_room
from policy.states import Access
from tests.e2e.stack import appservice_bot

from .env import Env
from .market import Market, market
from .plan import Scale
from .report import Figure, Result, at_least, percentiles


async def run(env: Env, scale: Scale) -> Result:
    result = Result("provisioning")
    ours: list[float] = []
    direct: list[float] = []
    walls = {"ours": 0.0, "direct": 0.0}
    async with market(env) as m, ClientSession() as session:
        bot = appservice_bot(m.process.config, session)
        meter = env.meter(bridge=m.pid)
        meter.start()
        makers = {"ours": (ours, m.create), "direct": (direct, lambda: _direct(bot, m))}
        # Small batches in the order ours, direct, direct, ours, over and over: Synapse
        # slowing as its database grows, or a neighbour's load, weighs on both alike.
        # Three rooms a slot per batch: a batch's wall time ends with its slowest create, and
        # with one a slot that tail weighed more than the creates themselves.
        step = 3 * scale.provisioning_concurrency
        rounds = max(1, scale.provisioned_rooms // (2 * step))
        for order in (("ours", "direct"), ("direct", "ours")) * rounds:
            for side in order:
                timings, make = makers[side]
                walls[side] += await _batch(step, scale.provisioning_concurrency, timings, make)
        result.cpu_seconds = meter.stop()
        result.work = (len(ours) + len(direct), "room (ours and direct)")
    ours_rate, direct_rate = len(ours) / walls["ours"], len(direct) / walls["direct"]
    result.figures = [
        at_least("rooms/s ours / direct", ours_rate / direct_rate, "ratio", 0.95),
        Figure("rooms/s through our API", ours_rate, "rooms/s"),
        Figure("rooms/s direct", direct_rate, "rooms/s"),
        Figure("create p99 ours", percentiles(ours)["p99"] * 1000, "ms"),
        Figure("create p99 direct", percentiles(direct)["p99"] * 1000, "ms"),
    ]
    result.notes = (
        f"{len(ours)} rooms each way, {scale.provisioning_concurrency} at a time, in batches "
        "alternating ours, direct, direct, ours"
    )
    return result


async def _batch(count: int, concurrency: int, timings: list[float], make) -> float:
    """Make ``count`` rooms, ``concurrency`` at a time; the wall time it took."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            started = time.perf_counter()
            await make()
            timings.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


async def _direct(bot, m: Market) -> None:
    """What the bridge asks of Synapse for one transaction room, asked directly."""
    people = Participants(bot=bot.user_id, parties=(m.buyer.user_id, m.seller.user_id))
    plan = plan_room(RoomKind.TRANSACTION, Access.LOCKED, people, "12", "Vintage bike")
    await asyncio.gather(*(bot.user_exists(p) for p in people.parties))
    room_id = await bot.create_room(
        alias_localpart=f"market_bench_direct_{uuid.uuid4().hex[:12]}",
        name=plan.name,
        topic=plan.topic,
        room_version="12",
        power_levels=plan.power_levels,
        initial_state=plan.initial_state(),
    )
    # As the bridge does: each invitation on its own (an invitee who blocks fails only itself).
    await asyncio.gather(*(bot.invite(room_id, party) for party in plan.invitees))
    notice = transaction_notice(Milestone.CREATED, "Vintage bike", None)
    await bot.send_message(room_id, "m.room.message", notice.content(), uuid.uuid4().hex)

"""12. The policy bot's planned actions: how fast a backlog of them is carried out.

    the bridge process (its own PostgreSQL database), action_rooms open rooms
    -> `actions` warnings planned at once in its database, round-robin over the rooms (what a
       spammer posting contact details in many rooms, or a homeserver outage, leaves behind)
    -> its action worker (it looks every second) claims, sends and marks each done
       -> actions a second: from the first action done to the last (the database's stamps)
    baseline: the same notices sent by a party's client, room by room, as many rooms at
              once as the worker takes (ROOM_CONCURRENCY): what Synapse takes here

No target: every warning is a message Synapse sends, so its own rate is the ceiling.
"""

from __future__ import annotations

import time

import asyncpg
from nio import AsyncClient, RoomSendResponse

from bridge.policybot.action_worker import ROOM_CONCURRENCY
from bridge.policybot.actions import ActionKind, PlannedAction, plan_actions
from bridge.runtime.workers import room_by_room
from tests.harness import eventually

from .env import Env
from .market import market
from .plan import Scale
from .report import Figure, Result

DEADLINE_SECONDS = 120.0


async def run(env: Env, scale: Scale) -> Result:
    result = Result("actions")
    async with market(env) as m:
        rooms = [(await m.open_room())["room_id"] for _ in range(scale.action_rooms)]
        warnings = [
            PlannedAction(
                f"warn:bench-{n}",
                rooms[n % len(rooms)],
                ActionKind.WARN,
                {
                    "user_id": m.buyer.user_id,
                    "rules": ["contact_details"],
                    "reasons": ["a phone number"],
                    "redacted": True,
                    "muted_for_s": 0,
                },
            )
            for n in range(scale.actions)
        ]
        connection = await asyncpg.connect(m.process.config.database.url)
        try:
            meter = env.meter(bridge=m.pid)
            meter.start()
            async with connection.transaction():
                await plan_actions(connection, warnings, int(time.time() * 1000))
            done = await _until_done(connection, len(warnings))
            result.cpu_seconds = meter.stop()
        finally:
            await connection.close()
        direct = await _direct_rate(m.seller, warnings)
    rate = _rate(done)
    result.work = (len(warnings), "action")
    result.figures = [
        Figure("warnings carried out a second", rate, "/s"),
        Figure("baseline: the same notices sent directly a second", direct, "/s"),
        Figure("carried out / direct", rate / direct, "ratio"),
        Figure("actions", len(warnings), "actions"),
    ]
    result.notes = (
        f"{len(warnings)} warnings planned at once over {len(rooms)} rooms; the baseline sends "
        f"them from the seller's client, {ROOM_CONCURRENCY} rooms at once, each room's in turn"
    )
    return result


async def _until_done(connection: asyncpg.Connection, count: int) -> list[int]:
    """Each warning's done_at, once every one is done (a failed one is an error)."""

    async def all_done() -> list[int]:
        rows = await connection.fetch(
            "SELECT status, done_at, last_error FROM planned_actions"
            " WHERE key LIKE 'warn:bench-%' AND status <> 'pending'"
        )
        if failed := [row["last_error"] for row in rows if row["status"] != "done"]:
            raise RuntimeError(f"{len(failed)} warnings failed: {failed[0]}")
        assert len(rows) == count, f"{len(rows)} of {count} warnings carried out"
        return sorted(row["done_at"] for row in rows)

    return await eventually(all_done, within=DEADLINE_SECONDS)


async def _direct_rate(client: AsyncClient, warnings: list[PlannedAction]) -> float:
    """Sends a second of the same notices from a client, room by room as the worker goes."""
    finished: list[int] = []

    async def send(warning: PlannedAction) -> None:
        content = {"msgtype": "m.notice", "body": f"bench warning {warning.key}"}
        response = await client.room_send(warning.room_id, "m.room.message", content)
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        finished.append(int(time.time() * 1000))

    await room_by_room(warnings, lambda w: w.room_id, send, ROOM_CONCURRENCY)
    return _rate(sorted(finished))


def _rate(finished: list[int]) -> float:
    """Completions a second between the first and the last (each run's start, a poll away
    for the worker, is left out of both)."""
    return (len(finished) - 1) / max((finished[-1] - finished[0]) / 1000, 1e-3)

"""Delivery across real processes: a bridge killed mid-stream, two bridges on one database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession
from nio import RoomSendResponse

from bridge.app import Bridge
from bridge.config import Config
from tests.conftest import UserFactory
from tests.e2e.stack import Stack, join, send, timeline, with_deals, with_webhooks
from tests.harness import (
    BridgeProcess,
    Homeserver,
    MarketClient,
    WebhookReceiver,
    eventually,
    free_port,
    fresh_postgres_database,
    running_bridge,
)


def first_deliveries(hooks: WebhookReceiver, room_id: str) -> list[str]:
    """Event ids of a room's message.created notifications, in first-delivered order."""
    seen: list[str] = []
    for body in hooks.delivered("message.created"):
        event_id = body["data"]["event_id"]
        if body["data"]["room_id"] == room_id and event_id not in seen:
            seen.append(event_id)
    return seen


async def test_a_bridge_killed_mid_stream_delivers_everything_after_restart(
    stack: Stack, hooks: WebhookReceiver, tmp_path: Path
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    process = BridgeProcess(stack.config, tmp_path)
    await process.start()
    try:
        room_id = await stack.create()
        await join(stack.buyer, room_id)
        await stack.transition(room_id, "/payment")
        sent: list[str] = []
        for n in range(30):
            if n == 10:
                process.kill()  # SIGKILL: no cleanup, whatever was in flight is cut
            response = await send(stack.buyer, room_id, f"message {n}")
            assert isinstance(response, RoomSendResponse), response
            sent.append(response.event_id)
        await process.start()

        async def all_delivered() -> bool:
            return set(first_deliveries(hooks, room_id)) == set(sent)

        await eventually(all_delivered, within=60)
        assert first_deliveries(hooks, room_id) == sent  # and in order
        ids_by_event: dict[str, set[str]] = {}
        for body in hooks.delivered("message.created"):
            ids_by_event.setdefault(body["data"]["event_id"], set()).add(body["id"])
        assert all(len(ids) == 1 for ids in ids_by_event.values())  # repeats keep their id
    finally:
        if process.process and process.process.poll() is None:
            process.kill()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@dataclass
class TwoBridges:
    stack: Stack  # its API is the first bridge's, in this process; Synapse talks to it
    first: Bridge
    second_api: MarketClient  # a second bridge process on the same database and receiver


@pytest.fixture
def two_bridges_config() -> Callable[[Config], Config]:
    """What the two bridges' config changes (a test may override it)."""
    return lambda config: config


@pytest.fixture
async def two_bridges(
    homeserver: Homeserver,
    postgres_url: str,
    make_user: UserFactory,
    hooks: WebhookReceiver,
    tmp_path: Path,
    api_timings: dict,
    two_bridges_config: Callable[[Config], Config],
) -> AsyncIterator[TwoBridges]:
    async with ClientSession() as session:
        stack = Stack(
            two_bridges_config(with_webhooks(homeserver.bridge_config(postgres_url), hooks.url)),
            session,
            await make_user("buyer"),
            await make_user("seller"),
            api_timings,
        )
        second_config = stack.config.model_copy(
            update={"server": stack.config.server.model_copy(update={"port": free_port()})}
        )
        second = BridgeProcess(second_config, tmp_path)
        second_api = MarketClient(
            session, f"http://127.0.0.1:{second_config.server.port}", stack.api.token
        )
        async with running_bridge(stack.config) as first:
            await second.start()
            try:
                yield TwoBridges(stack, first, second_api)
            finally:
                second.kill()


async def test_two_bridges_on_one_postgresql_keep_order_and_never_double_deliver(
    two_bridges: TwoBridges, hooks: WebhookReceiver
) -> None:
    hooks.delay = 0.02  # long enough for the two processes to contend for rows
    stack = two_bridges.stack
    rooms = [await stack.create() for _ in range(3)]
    for room_id in rooms:
        await join(stack.buyer, room_id)
        await stack.transition(room_id, "/payment")
    sent: dict[str, list[str]] = {room_id: [] for room_id in rooms}

    async def talk(room_id: str) -> None:
        for n in range(8):
            response = await send(stack.buyer, room_id, f"message {n}")
            assert isinstance(response, RoomSendResponse), response
            sent[room_id].append(response.event_id)

    await asyncio.gather(*(talk(room_id) for room_id in rooms))

    async def all_delivered() -> bool:
        return all(
            set(first_deliveries(hooks, room_id)) == set(sent[room_id]) for room_id in rooms
        )

    await eventually(all_delivered, within=60)
    for room_id in rooms:
        assert first_deliveries(hooks, room_id) == sent[room_id]
    assert hooks.concurrent_duplicates == []
    delivered_ids = [body["id"] for body in hooks.delivered()]
    assert len(delivered_ids) == len(set(delivered_ids))  # no row delivered twice


async def test_two_bridges_answer_concurrent_transitions_alike(
    two_bridges: TwoBridges, hooks: WebhookReceiver
) -> None:
    stack = two_bridges.stack
    room_id = await stack.create()
    path = f"/transactions/{stack.created[-1]['transaction_id']}/payment"
    apis = (stack.api, two_bridges.second_api) * 3
    answers = await asyncio.gather(*(api.call("POST", path) for api in apis))
    assert [status for status, _ in answers] == [200] * 6
    assert {body["state"] for _, body in answers} == {"paid"}
    # One transition happened, so one notification was queued.
    queued = await two_bridges.first.db.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE stream = $1 AND type = $2",
        room_id,
        "room.state_changed",
    )
    assert queued == 1

    async def notified() -> list[dict]:
        return [
            b for b in hooks.delivered("room.state_changed") if b["data"]["room_id"] == room_id
        ]

    (changed,) = await eventually(notified)
    assert changed["data"]["cause"] == "payment"


class TestFollowUpsAcrossTwoProcesses:
    """Reminders and nudges come due in both bridge processes at once, in real time (the
    second process's clock cannot be moved): each fires once."""

    @pytest.fixture
    def two_bridges_config(self) -> Callable[[Config], Config]:
        return lambda config: with_deals(config, {"unread_after": 1}, {"nudge_after": 2})

    async def test_each_reminder_and_nudge_fires_once(
        self, two_bridges: TwoBridges, hooks: WebhookReceiver
    ) -> None:
        stack = two_bridges.stack
        rooms = [await stack.create() for _ in range(4)]
        for room_id in rooms:
            await join(stack.buyer, room_id)
            await join(stack.seller, room_id)
            await stack.transition(room_id, "/payment")
            await send(stack.buyer, room_id, "Is it still available?")

        def notified(type_: str) -> set[str]:
            return {b["data"]["room_id"] for b in hooks.delivered(type_)}

        async def followed_up() -> bool:
            return all(
                set(rooms) <= notified(type_)
                for type_ in ("message.unread_reminder", "deal.nudge")
            )

        await eventually(followed_up, within=60)
        rows = await two_bridges.first.db.fetch(
            "SELECT room_id, kind, status, fired, attempts FROM follow_ups"
        )
        assert sorted((r["room_id"], r["kind"]) for r in rows) == sorted(
            (room_id, kind) for room_id in rooms for kind in ("nudge", "unread_reminder")
        )
        # One claim each: the other process never took one (nor fired it).
        assert {(r["status"], r["fired"], r["attempts"]) for r in rows} <= {
            ("waiting", 1, 1),
            ("done", 1, 1),
        }
        for room_id in rooms:

            async def nudged(room_id: str = room_id) -> list[dict]:
                return [
                    e
                    for e in await timeline(stack.seller, room_id)
                    if "waiting" in e["content"].get("body", "")
                ]

            assert len(await eventually(nudged)) == 1

"""Scenario 3: Synapse stopped and restarted mid-stream (a Synapse of this test's own)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.chaos.common import Ledger, Settings, chaos_config, open_room, send_messages
from tests.conftest import user_factory
from tests.e2e.stack import Stack
from tests.harness import (
    BridgeProcess,
    Homeserver,
    WebhookReceiver,
    inbox_arrivals,
    stored_late,
    unique_id,
)

pytestmark = pytest.mark.chaos


async def test_synapse_restarts_mid_stream_lose_nothing(
    own_homeserver: Homeserver,
    postgres_url: str,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    synapse = own_homeserver.synapse
    restarts = max(3, settings.cycles // 3)
    ledger = Ledger("Synapse restart", settings, hooks, postgres_url)
    config = chaos_config(own_homeserver, postgres_url, hooks)
    process = BridgeProcess(config, tmp_path)
    down: list[float] = []
    async with ClientSession() as session, user_factory(own_homeserver) as make:
        stack = Stack(
            config,
            session,
            await make(unique_id("buyer")),
            await make(unique_id("seller")),
            {},
        )
        await process.start()
        try:
            chat = [await open_room(stack, ledger)]
            for cycle in range(restarts):
                stream = asyncio.gather(
                    open_room(stack, ledger, pay=cycle % 2 == 0),
                    send_messages(stack.buyer, ledger, list(chat), settings.messages, rng),
                )
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                stopping = time.monotonic()
                ledger.began.append(time.time())
                await asyncio.to_thread(synapse.stop)
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                await asyncio.to_thread(synapse.start)
                down.append(time.monotonic() - stopping)
                ledger.restored.append(time.time())
                room_id, _ = await stream
                if ledger.planned[room_id].value == "open":
                    chat.append(room_id)
                ledger.cycles += 1
            await send_messages(stack.buyer, ledger, chat, settings.messages, rng)
            await ledger.all_delivered(within=120)
            late = stored_late(await inbox_arrivals(postgres_url))
            # Only events Synapse dropped and the bridge read back may come after newer ones.
            assert all(arrival.read_back for arrival in late), late
            ledger.late = {arrival.event_id for arrival in late} & ledger.sent_ids()
            await ledger.check_rooms(stack.buyer)
            assert process.process is not None and process.process.poll() is None
            ledger.report(
                pytestconfig,
                started,
                hold_target=True,
                **{"Synapse down": f"{sum(down) / len(down):.1f}s on average"},
            )
        finally:
            if process.process and process.process.poll() is None:
                process.kill()

"""Scenario 2: the bridge's PostgreSQL connections cut and restored mid-stream."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from yarl import URL

from tests.chaos.common import Ledger, Settings, open_room, send_messages
from tests.e2e.stack import Stack
from tests.harness import (
    BridgeProcess,
    TcpProxy,
    WebhookReceiver,
    inbox_arrivals,
    sent_late,
    stored_late,
)

pytestmark = pytest.mark.chaos


async def test_database_cuts_mid_stream_lose_nothing(
    stack: Stack,
    postgres_url: str,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    database = URL(postgres_url)
    proxy = TcpProxy(database.port or 5432)
    await proxy.start()
    via_proxy = str(database.with_port(proxy.port))
    stack.config = stack.config.model_copy(
        update={"database": stack.config.database.model_copy(update={"url": via_proxy})}
    )
    ledger = Ledger("database cut", settings, hooks, postgres_url)
    process = BridgeProcess(stack.config, tmp_path)
    await process.start()
    cuts = max(5, settings.cycles // 4)
    try:
        chat = [await open_room(stack, ledger)]
        for cycle in range(cuts):
            stream = asyncio.gather(
                open_room(stack, ledger, pay=cycle % 2 == 0),
                send_messages(stack.buyer, ledger, list(chat), settings.messages, rng),
            )
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            ledger.began.append(time.time())
            await proxy.stop()  # every connection cut, new ones refused
            await asyncio.sleep(rng.uniform(0.5, 2.0 if not settings.long else 10.0))
            await proxy.start()
            ledger.restored.append(time.time())
            room_id, _ = await stream
            if ledger.planned[room_id].value == "open":
                chat.append(room_id)
            ledger.cycles += 1
        # One more burst after the last cut: the bridge is whole again.
        await send_messages(stack.buyer, ledger, chat, settings.messages, rng)
        await ledger.all_delivered(within=120)
        # Synapse can push an older transaction after newer ones once an outage ends (it
        # marks the appservice down in the background, and a transaction it makes while its
        # recoverer finishes is sent late or never: docs/reliability.md). The bridge stores
        # what it gets in the order it gets it, and reads back what never came; only such
        # events may come after newer ones.
        arrivals = await inbox_arrivals(postgres_url)
        late = stored_late(arrivals)
        assert all(a.read_back or sent_late(a, arrivals) for a in late), late
        ledger.late = {arrival.event_id for arrival in late} & ledger.sent_ids()
        await ledger.check_rooms(stack.buyer)
        assert process.process is not None and process.process.poll() is None, process.log()
        ledger.report(pytestconfig, started, hold_target=True)
    finally:
        if process.process and process.process.poll() is None:
            process.kill()
        await proxy.stop()

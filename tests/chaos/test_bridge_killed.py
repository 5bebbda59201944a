"""Scenario 1: the bridge process SIGKILLed at random moments of a stream, restarted, again."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.chaos.common import (
    Ledger,
    Settings,
    close_room,
    open_room,
    send_messages,
    spread,
)
from tests.e2e.stack import Stack
from tests.harness import BridgeProcess, WebhookReceiver

pytestmark = pytest.mark.chaos


async def test_a_bridge_killed_at_random_moments_loses_nothing(
    stack: Stack,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    ledger = Ledger("bridge SIGKILL", settings, hooks, stack.config.database.url)
    process = BridgeProcess(stack.config, tmp_path)
    starts: list[float] = []  # seconds from each launch to /ready
    await process.start()
    try:
        chat = [await open_room(stack, ledger)]
        for cycle in range(settings.cycles):
            # A stream of messages and API calls (creates, payments, a close now and then)...
            async def api_calls(cycle: int = cycle) -> None:
                room_id = await open_room(stack, ledger, pay=cycle % 3 != 2)
                if ledger.planned[room_id].value == "open":
                    chat.append(room_id)
                if cycle % 4 == 3:
                    await close_room(stack, ledger, (await open_room(stack, ledger)))

            stream = asyncio.gather(
                api_calls(), send_messages(stack.buyer, ledger, list(chat), settings.messages, rng)
            )
            # ...cut by a SIGKILL at a random moment, then a restart.
            await asyncio.sleep(rng.uniform(0.05, 1.0))
            ledger.began.append(time.time())
            process.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            launched = time.monotonic()
            await process.start()
            starts.append(time.monotonic() - launched)
            # As when Synapse restarts, the fault ends when the process answers again; how
            # long a start takes is printed beside (and measured by `make bench`).
            ledger.restored.append(time.time())
            await stream
            ledger.cycles += 1
        await ledger.all_delivered(within=120)
        await ledger.check_rooms(stack.buyer)
        ledger.report(
            pytestconfig, started, hold_target=True, **{"bridge start (to /ready)": spread(starts)}
        )
    finally:
        if process.process and process.process.poll() is None:
            process.kill()

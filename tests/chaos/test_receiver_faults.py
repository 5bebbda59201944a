"""Scenario 4: the marketplace's receiver answering 500, hanging past the timeout, and down."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.chaos.common import Ledger, Settings, open_room, send_messages
from tests.e2e.stack import Stack, with_webhooks
from tests.harness import BridgeProcess, WebhookReceiver

pytestmark = pytest.mark.chaos

TIMEOUT = 0.5  # webhooks.timeout_seconds: a hanging receiver costs this much per attempt
# The example config's backoff (1 s doubling to 10 minutes), not the tests' 0.5 s at most: a
# row that failed through the outage must not wait out its backoff once the receiver is back.
BACKOFF = {"backoff_initial_seconds": 1.0, "backoff_max_seconds": 600.0}


async def test_a_failing_receiver_gets_everything_in_order_once_back(
    stack: Stack,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    stack.config = with_webhooks(stack.config, hooks.url, timeout_seconds=TIMEOUT, **BACKOFF)
    ledger = Ledger("receiver faults", settings, hooks, stack.config.database.url)
    process = BridgeProcess(stack.config, tmp_path)
    await process.start()
    try:
        chat = [await open_room(stack, ledger) for _ in range(3)]
        await send_messages(stack.buyer, ledger, chat, settings.messages, rng)
        await ledger.all_delivered(within=30)
        for fault in ("500", "hang", "down"):
            if fault == "500":
                hooks.behave = lambda body, n: 500
            elif fault == "hang":
                hooks.behave = lambda body, n: "timeout"
            else:
                await hooks.stop()
            ledger.began.append(time.time())
            # Messages keep coming for the whole outage, spread over it.
            fault_started = time.monotonic()
            count = settings.messages * 2
            for _ in range(count):
                await send_messages(stack.buyer, ledger, chat, 1, rng)
                await asyncio.sleep(settings.outage / count)
            await asyncio.sleep(max(0.0, settings.outage - (time.monotonic() - fault_started)))
            hooks.behave = lambda body, n: 200
            if fault == "down":
                await hooks.start()
            ledger.restored.append(time.time())
            await ledger.all_delivered(within=60 + settings.outage)
            ledger.cycles += 1
        await ledger.check_rooms(stack.buyer)
        failed = [a for a in hooks.attempts if not 200 <= a.answered < 300]
        ledger.report(
            pytestconfig, started, hold_target=True, **{"failed attempts seen": len(failed)}
        )
    finally:
        if process.process and process.process.poll() is None:
            process.kill()

"""Scenario 5: payment, close and a dispute for one transaction racing, on two bridge processes
sharing one PostgreSQL: the outcome is one the transitions allow, in some order, and the room's
power levels give the access of the recorded state."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest

from policy.rooms import EVENTS_DEFAULT
from policy.states import (
    InvalidTransition,
    Outcome,
    TransactionState,
    decide_close,
    decide_open_dispute,
    decide_payment,
    transaction_access,
)
from tests.chaos.common import Ledger, Settings
from tests.e2e.stack import Stack, join, state
from tests.harness import (
    BridgeProcess,
    MarketClient,
    WebhookReceiver,
    eventually,
    free_port,
    running_bridge,
    unique_id,
)

pytestmark = pytest.mark.chaos

OK = {"payment": 200, "close": 200, "dispute": 201}


def serial_outcomes(
    start: TransactionState, outcome: Outcome
) -> set[tuple[tuple[tuple[str, int], ...], str, str | None, bool]]:
    """Every result the three calls can have when applied one after another, in any order:
    (the calls' statuses, final state, final outcome, dispute open)."""
    results = set()
    for order in itertools.permutations(("payment", "close", "dispute")):
        current, current_outcome, dispute_open = start, None, False
        statuses: dict[str, int] = {}
        for call in order:
            try:
                if call == "payment":
                    t = decide_payment(current, current_outcome, dispute_open)
                    current, current_outcome = t.state, t.outcome
                elif call == "close":
                    t = decide_close(current, current_outcome, outcome, dispute_open)
                    current, current_outcome = t.state, t.outcome
                else:
                    decide_open_dispute(current, None if not dispute_open else "d")
                    dispute_open = True
                statuses[call] = OK[call]
            except InvalidTransition:
                statuses[call] = 409
        results.add(
            (
                tuple(sorted(statuses.items())),
                current.value,
                current_outcome.value if current_outcome else None,
                dispute_open,
            )
        )
    return results


async def test_racing_payment_close_and_dispute_end_in_an_allowed_state(
    stack: Stack,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    ledger = Ledger("transition race", settings, hooks, stack.config.database.url)
    second_config = stack.config.model_copy(
        update={"server": stack.config.server.model_copy(update={"port": free_port()})}
    )
    second = BridgeProcess(second_config, tmp_path)
    outcomes: dict[str, int] = {}
    # Per room, the notifications its successful transitions queued: (type, cause).
    expected: dict[str, set[tuple[str, str]]] = {}
    async with running_bridge(stack.config):
        await second.start()
        try:
            apis = (
                stack.api,
                MarketClient(
                    stack.session,
                    f"http://127.0.0.1:{second_config.server.port}",
                    stack.api.token,
                ),
            )
            for round_ in range(settings.cycles):
                room_id = await stack.create()
                txn_id = stack.created[-1]["transaction_id"]
                await join(stack.buyer, room_id)
                start = TransactionState.AWAITING_PAYMENT
                if round_ % 2:  # half the rounds start paid, where a dispute can open
                    await stack.transition(room_id, "/payment")
                    start = TransactionState.PAID
                outcome = rng.choice(list(Outcome))
                dispute_id = unique_id("dispute")
                calls = {
                    "payment": ("POST", f"/transactions/{txn_id}/payment", None),
                    "close": ("POST", f"/transactions/{txn_id}/close", {"outcome": outcome}),
                    "dispute": (
                        "POST",
                        "/disputes",
                        {
                            "dispute_id": dispute_id,
                            "transaction_id": txn_id,
                            "reason": "Item not as described",
                            "opened_by": "buyer",
                        },
                    ),
                }
                names = list(calls)
                rng.shuffle(names)
                answers = await asyncio.gather(
                    *(rng.choice(apis).call(*calls[name]) for name in names)
                )
                ledger.api_calls += len(answers)
                statuses = {name: status for name, (status, _) in zip(names, answers, strict=True)}
                assert set(statuses.values()) <= {200, 201, 409}, answers
                _, txn = await stack.api.call("GET", f"/transactions/{txn_id}")
                status, dispute = await stack.api.call("GET", f"/disputes/{dispute_id}")
                dispute_open = status == 200 and dispute["state"] == "open"
                observed = (
                    tuple(sorted(statuses.items())),
                    txn["state"],
                    txn["outcome"],
                    dispute_open,
                )
                allowed = serial_outcomes(start, outcome)
                assert observed in allowed, f"round {round_}: {observed} not in {allowed}"
                access = transaction_access(TransactionState(txn["state"]), dispute_open)
                assert txn["access"] == access.value, txn
                ledger.planned[room_id] = access
                expected[room_id] = {
                    ("room.state_changed", cause)
                    for cause, happened in (
                        ("payment", txn["paid_at"] is not None),
                        (outcome.value, txn["state"] == "closed"),
                    )
                    if happened
                } | ({("dispute.opened", "")} if statuses["dispute"] == 201 else set())
                key = f"{start.value}: {txn['state']}{' + dispute' if dispute_open else ''}"
                outcomes[key] = outcomes.get(key, 0) + 1
                ledger.cycles += 1

                async def planned(room_id: str = room_id, access: Any = access) -> bool:
                    levels = await state(stack.buyer, room_id, "m.room.power_levels")
                    assert levels["events_default"] == EVENTS_DEFAULT[access], (room_id, access)
                    return True

                await eventually(planned, within=30, interval=0.1)
            await ledger.check_rooms(stack.buyer)

            def notified() -> dict[str, set[tuple[str, str]]]:
                seen: dict[str, set[tuple[str, str]]] = {room_id: set() for room_id in expected}
                for body in hooks.delivered():
                    room_id = body["data"].get("room_id")
                    if room_id in seen and body["type"] == "room.state_changed":
                        seen[room_id].add((body["type"], body["data"]["cause"]))
                    elif room_id in seen and body["type"] == "dispute.opened":
                        seen[room_id].add((body["type"], ""))
                return seen

            async def all_notified() -> bool:
                assert notified() == expected
                return True

            await eventually(all_notified, within=60, interval=0.2)
            webhook_ids = [body["id"] for body in hooks.delivered()]
            ledger.report(
                pytestconfig,
                started,
                outcomes=", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items())),
                notifications=f"{sum(map(len, expected.values()))} expected, all delivered, "
                f"{len(webhook_ids) - len(set(webhook_ids))} duplicates",
            )
        finally:
            second.kill()

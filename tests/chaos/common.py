"""What every chaos scenario shares: its settings, a message stream, the final checks, figures."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientError
from nio import AsyncClient, RoomSendResponse

from bridge.config import Config
from policy.rooms import EVENTS_DEFAULT
from policy.states import Access
from tests.e2e.stack import Stack, join, send, state, with_policy, with_webhooks
from tests.harness import CHAOS_FIGURES, Homeserver, WebhookReceiver, eventually, where_stopped

# After any fault ends, the messages sent before its end reach the marketplace within this
# (issue 21: recovery as fast as the fault is short, whatever the processor).
BACKLOG_TARGET_S = 5.0

MESSAGES = (
    "Is it still available?",
    "Yes, ready to ship tomorrow.",
    "Great, thanks!",
    "Could you add the helmet strap?",
)


def chaos_config(homeserver: Homeserver, database_url: str, hooks: WebhookReceiver) -> Config:
    """Webhooks to ``hooks``; no flood limit (a stream of messages is the point, not a mute)."""
    config = with_webhooks(homeserver.bridge_config(database_url), hooks.url)
    return with_policy(config, flood_messages=10000)


@dataclass(frozen=True)
class Settings:
    long: bool
    cycles: int
    messages: int  # per cycle
    outage: float  # seconds a receiver fault lasts
    seed: int

    @classmethod
    def of(cls, config: pytest.Config) -> Settings:
        long = bool(config.getoption("chaos_long"))
        cycles = config.getoption("chaos_cycles") or (50 if long else 10)
        messages = config.getoption("chaos_messages") or (6 if long else 4)
        outage = config.getoption("chaos_outage") or (120.0 if long else 2.0)
        seed = config.getoption("chaos_seed")
        if seed is None:
            seed = random.SystemRandom().randrange(1_000_000)
        return cls(long, cycles, messages, outage, seed)


@dataclass
class Sent:
    event_id: str
    room_id: str
    at: float


@dataclass
class Ledger:
    """What a scenario sent and the rooms' planned access; checks them against the receiver."""

    name: str
    settings: Settings
    hooks: WebhookReceiver
    database_url: str  # the bridge's PostgreSQL (directly, not through a scenario's proxy)
    sent: list[Sent] = field(default_factory=list)
    planned: dict[str, Access] = field(default_factory=dict)  # room id -> access
    restored: list[float] = field(default_factory=list)  # when each fault ended (time.time)
    # When each fault began, where the scenario says: a backlog's time leaves out the later
    # faults it overlaps (a cut that starts 0.2 s after the last one ended holds both).
    began: list[float] = field(default_factory=list)
    # Messages stored after newer ones of their room (Synapse pushed them late, or never and
    # the bridge read them back from the timeline): notified late, so the order check leaves
    # them out.
    late: set[str] = field(default_factory=set)
    cycles: int = 0
    api_calls: int = 0
    api_retries: int = 0

    def sent_ids(self) -> set[str]:
        return {s.event_id for s in self.sent}

    def first_deliveries(self) -> dict[str, tuple[float, str]]:
        """event id -> (first 2xx arrival, webhook id), message.created only."""
        first: dict[str, tuple[float, str]] = {}
        for attempt in self.hooks.attempts:
            body = attempt.body
            if 200 <= attempt.answered < 300 and body["type"] == "message.created":
                first.setdefault(body["data"]["event_id"], (attempt.received_at, body["id"]))
        return first

    async def all_delivered(self, within: float) -> None:
        """Every message sent reached the marketplace within ``within`` seconds; else the
        failure says where each missing one stopped in the bridge's database (a long run's
        failure is rare and costly to reproduce)."""

        async def done() -> bool:
            missing = self.undelivered()
            assert not missing, f"{len(missing)} of {len(self.sent)} messages not delivered"
            return True

        try:
            await eventually(done, within=within, interval=0.2)
        except AssertionError as failure:
            found = await where_stopped(self.database_url, self.undelivered())
            raise AssertionError(f"{failure}\n{found}") from failure

    def undelivered(self) -> set[str]:
        return self.sent_ids() - set(self.first_deliveries())

    def check_deliveries(self) -> dict[str, Any]:
        """Every message delivered, in order per room, one webhook id per event; the figures."""
        first = self.first_deliveries()
        by_room: dict[str, list[str]] = {}
        for s in self.sent:
            if s.event_id not in self.late:
                by_room.setdefault(s.room_id, []).append(s.event_id)
        for room_id, expected in by_room.items():
            wanted = set(expected)  # a send retried after a cut may have posted twice
            order = [
                a.body["data"]["event_id"]
                for a in sorted(self.hooks.attempts, key=lambda a: a.received_at)
                if 200 <= a.answered < 300
                and a.body["type"] == "message.created"
                and a.body["data"]["room_id"] == room_id
            ]
            firsts = [e for e in dict.fromkeys(order) if e in wanted]
            assert firsts == expected, (
                f"room {room_id}: delivered out of order or not at all: "
                f"sent {expected}, first delivered {firsts}, every delivery {order}"
            )
        ids_by_event: dict[str, set[str]] = {}
        delivered = self.hooks.delivered()
        for body in delivered:
            if body["type"] == "message.created":
                ids_by_event.setdefault(body["data"]["event_id"], set()).add(body["id"])
        assert all(len(ids) == 1 for ids in ids_by_event.values()), "a webhook id changed"
        webhook_ids = [body["id"] for body in delivered]
        return {
            "delivered": len(first),
            "duplicates": len(webhook_ids) - len(set(webhook_ids)),
            "attempts": len(self.hooks.attempts),
        }

    def recovery(self) -> tuple[list[float], list[float]]:
        """Per fault: seconds from its end to the first delivery after it, and to the delivery
        of the last message sent before it ended (0 when nothing was waiting), each less the
        later faults within that time."""
        first = self.first_deliveries()
        arrivals = sorted(a.received_at for a in self.hooks.attempts if 200 <= a.answered < 300)
        to_first: list[float] = []
        to_last: list[float] = []
        for fault, restored in enumerate(self.restored):
            after = [t for t in arrivals if t >= restored]
            if after:
                to_first.append(self.fault_free(fault, after[0]))
            waiting = [first[s.event_id][0] for s in self.sent if s.at < restored]
            to_last.append(max([0.0, *(self.fault_free(fault, t) for t in waiting)]))
        return to_first, to_last

    def fault_free(self, fault: int, until: float) -> float:
        """Seconds from the end of ``fault`` to ``until``, less the later faults within."""
        restored = self.restored[fault]
        later = []  # a scenario that does not say when its faults began: none left out
        if len(self.began) == len(self.restored):
            later = list(zip(self.began[fault + 1 :], self.restored[fault + 1 :], strict=True))
        during = sum(max(0.0, min(end, until) - max(start, restored)) for start, end in later)
        return until - restored - during

    async def check_rooms(self, client: AsyncClient, within: float = 30.0) -> None:
        """Each room's power levels give the access its recorded state plans."""
        for room_id, access in self.planned.items():

            async def planned(room_id: str = room_id, access: Access = access) -> bool:
                levels = await state(client, room_id, "m.room.power_levels")
                assert levels["events_default"] == EVENTS_DEFAULT[access], (room_id, access)
                return True

            await eventually(planned, within=within, interval=0.2)

    def report(
        self, config: pytest.Config, started: float, *, hold_target: bool = False, **extra: Any
    ) -> str:
        """Print and stash the scenario's figures; with ``hold_target``, fail when a backlog
        took longer than BACKLOG_TARGET_S (after printing, so the figure is seen)."""
        figures = self.check_deliveries()
        to_first, to_last = self.recovery()
        line = (
            f"chaos {self.name}: seed {self.settings.seed}, {self.cycles} cycles, "
            f"{len(self.sent)} messages sent, {figures['delivered']} delivered, "
            f"{figures['duplicates']} duplicate deliveries (by webhook id), "
            f"{len(self.late)} stored late, "
            f"{figures['attempts']} attempts, {len(self.planned)} rooms checked, "
            f"{self.api_calls} API calls ({self.api_retries} retried)"
        )
        if to_first:
            line += f"; recovery to first delivery {spread(to_first)}"
        if to_last:
            met = "met" if max(to_last) <= BACKLOG_TARGET_S else "MISSED"
            line += (
                f", to backlog delivered {spread(to_last)}"
                f" (target max {BACKLOG_TARGET_S:.0f}s: {met})"
            )
        for key, value in extra.items():
            line += f", {key} {value}"
        line += f"; {time.monotonic() - started:.0f}s"
        config.stash.setdefault(CHAOS_FIGURES, []).append(line)
        print(line)
        for fault in sorted(range(len(to_last)), key=lambda i: -to_last[i])[:3]:
            if to_last[fault] > 0:
                print(f"  slowest backlog: {self.last_delivered(fault)}")
        if hold_target and to_last:
            slow = [self.last_delivered(i) for i, t in enumerate(to_last) if t > BACKLOG_TARGET_S]
            assert not slow, f"backlog over {BACKLOG_TARGET_S}s after a fault: {slow}"
        return line

    def last_delivered(self, fault: int) -> str:
        """The message a fault's backlog waited for longest, with times to find it in logs."""
        restored = self.restored[fault]
        first = self.first_deliveries()
        waiting = [s for s in self.sent if s.at < restored]
        last = max(waiting, key=lambda s: first[s.event_id][0])
        at = first[last.event_id][0]
        clock = time.strftime("%H:%M:%S", time.localtime(restored))
        return (
            f"fault {fault} ended {clock}+{restored % 1:.3f}: {last.event_id} in {last.room_id}"
            f" (sent {last.at - restored:+.2f}s) delivered after {at - restored:.2f}s"
            f" ({self.fault_free(fault, at):.2f}s outside later faults)"
        )


def spread(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.2f}s max {max(values):.2f}s (n={len(values)})"


async def retrying(
    ledger: Ledger,
    call: Callable[[], Awaitable[tuple[int, Any]]],
    ok: tuple[int, ...] = (200, 201),
    within: float = 120.0,
) -> Any:
    """An API call as a marketplace makes it: retried while the bridge is down or answers 5xx."""
    ledger.api_calls += 1
    deadline = time.monotonic() + within
    while True:
        try:
            status, body = await call()
        except (TimeoutError, ClientError, OSError) as e:
            status, body = 0, repr(e)
        if status in ok:
            return body
        assert status == 0 or status >= 500, (status, body)
        assert time.monotonic() < deadline, f"the API never answered: {status} {body}"
        ledger.api_retries += 1
        await asyncio.sleep(0.2)


async def open_room(stack: Stack, ledger: Ledger, *, pay: bool = True) -> str:
    """A transaction created (and paid) through retries, the buyer joined."""
    txn = stack.transaction()
    body = await retrying(ledger, lambda: stack.api.call("POST", "/transactions", txn))
    room_id = body["room_id"]
    stack.created.append(body)
    await join(stack.buyer, room_id)
    ledger.planned[room_id] = Access.LOCKED
    if pay:
        path = f"/transactions/{txn['transaction_id']}/payment"
        await retrying(ledger, lambda: stack.api.call("POST", path))
        ledger.planned[room_id] = Access.OPEN
    return room_id


async def close_room(stack: Stack, ledger: Ledger, room_id: str) -> None:
    (txn,) = [t for t in stack.created if t["room_id"] == room_id]
    path = f"/transactions/{txn['transaction_id']}/close"
    await retrying(ledger, lambda: stack.api.call("POST", path, {"outcome": "cancelled"}))
    ledger.planned[room_id] = Access.ARCHIVED


async def send_messages(
    client: AsyncClient, ledger: Ledger, rooms: list[str], count: int, rng: random.Random
) -> None:
    """``count`` messages, each to a random one of ``rooms``, retried while Synapse is away."""
    for _ in range(count):
        room_id = rng.choice(rooms)
        # Plain words: digits could read as a phone number, which the policy bot redacts.
        body = rng.choice(MESSAGES)
        for _attempt in range(600):
            try:
                response = await send(client, room_id, body)
            except (TimeoutError, ClientError, OSError):
                response = None
            if isinstance(response, RoomSendResponse):
                break
            assert getattr(response, "status_code", None) != "M_FORBIDDEN", response
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"could not send to {room_id}: {response}")
        ledger.sent.append(Sent(response.event_id, room_id, time.time()))

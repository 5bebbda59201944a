"""Scenario 6: scale-out. Synapse in worker mode (main process, an appservice-sender worker, a
client worker; PostgreSQL; replication over Redis) and two bridge replicas on one PostgreSQL
database behind a round-robin proxy, which Synapse's pushes and the marketplace's API calls
go through (docs/scaling.md).

    phase 1, both replicas: rooms opened, a stream of messages, a contact detail per room
        -> every message delivered once, in order per room; both replicas served API calls
           and homeserver transactions
    phase 2: a stream, one replica SIGKILLed once its first message is delivered, the stream
        going on, a room opened after -> everything still delivered, in order, one webhook id
        per event (a redelivery after the kill is allowed: at least once)
    both: each policy action (redact, warn) carried out once: one audit entry, one warning
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession
from nio import AsyncClient, RoomMessagesResponse, RoomSendResponse

from bridge.ops.deployment import write_registration
from tests.chaos.common import Ledger, Settings, chaos_config, open_room, send_messages
from tests.e2e.stack import Stack, send
from tests.harness import (
    BridgeProcess,
    Homeserver,
    WebhookReceiver,
    eventually,
    free_port,
    random_secret,
    unique_id,
)
from tests.round_robin import RoundRobinProxy
from tests.synapse_workers import SynapseWorkers, find_redis, synapse_database

pytestmark = pytest.mark.chaos

ROOMS = 4
PHONE = "call me on +44 7911 123456"
WARNING = "your message was removed"


async def bot_events(client: AsyncClient, room_id: str, bot: str) -> list[dict]:
    """The bot's messages and redactions in the room, its whole history (a page of the
    timeline holds only the latest events)."""
    found: list[dict] = []
    start = None
    while True:
        response = await client.room_messages(
            room_id,
            start=start,
            limit=100,
            message_filter={"senders": [bot], "types": ["m.room.message", "m.room.redaction"]},
        )
        assert isinstance(response, RoomMessagesResponse), response
        found += [event.source for event in response.chunk]
        if not response.chunk or not response.end:
            return found
        start = response.end


@dataclass
class ScaleOut:
    synapse: SynapseWorkers
    proxy: RoundRobinProxy
    replicas: list[BridgeProcess]
    stack: Stack  # its API goes through the proxy


@pytest.fixture
async def scale_out(
    tmp_path: Path, postgres_url: str, hooks: WebhookReceiver
) -> AsyncIterator[ScaleOut]:
    redis = find_redis()  # fails saying where it looked: this test never skips
    replica_ports = [free_port(), free_port()]
    proxy = RoundRobinProxy(replica_ports)
    registration = tmp_path / "registration.yaml"
    async with synapse_database() as database:
        synapse = SynapseWorkers(
            tmp_path / "synapse",
            database=database,
            redis=redis,
            client_workers=1,
            registration_files=[registration],
            relaxed_rate_limits=True,
        )
        # What a bridge needs of its homeserver; the appservice URL is the proxy's.
        homeserver = Homeserver(
            synapse,  # type: ignore[arg-type]
            proxy.port,
            random_secret(),
            random_secret(),
            {"homeserver": {"domain": synapse.server_name}},
        )
        config = chaos_config(homeserver, postgres_url, hooks)
        write_registration(config, registration)
        await proxy.start()
        replicas = [
            BridgeProcess(
                config.model_copy(
                    update={"server": config.server.model_copy(update={"port": port})}
                ),
                tmp_path,
            )
            for port in replica_ports
        ]
        clients: list[AsyncClient] = []
        try:
            await asyncio.to_thread(synapse.start)
            await asyncio.gather(*(replica.start() for replica in replicas))
            parties = []
            for role in ("buyer", "seller"):
                account = await asyncio.to_thread(
                    synapse.register_user, unique_id(role), random_secret()
                )
                # Parties talk to the client worker: their events are made off the main.
                client = AsyncClient(synapse.client_urls[0], account["user_id"])
                client.user_id, client.access_token = account["user_id"], account["access_token"]
                client.device_id = account["device_id"]
                clients.append(client)
                parties.append(client)
            async with ClientSession() as session:
                yield ScaleOut(synapse, proxy, replicas, Stack(config, session, *parties, {}))
        finally:
            for client in clients:
                await client.close()
            for replica in replicas:
                if replica.process is not None and replica.process.poll() is None:
                    replica.kill()
            await proxy.stop()
            synapse.stop()


# About 30 s: three Synapse processes and two bridges start (10 s), and the survivor waits
# out the killed replica's leases; the deadlines below bound each wait.
@pytest.mark.timeout(420)
async def test_two_replicas_behind_a_proxy_deliver_once_in_order_and_survive_a_kill(
    scale_out: ScaleOut,
    hooks: WebhookReceiver,
    settings: Settings,
    rng: random.Random,
    pytestconfig: pytest.Config,
) -> None:
    started = time.monotonic()
    stack, proxy = scale_out.stack, scale_out.proxy
    ledger = Ledger("scale-out", settings, hooks, stack.config.database.url)
    # Each answer takes a moment, so the replicas contend for rows.
    hooks.delay = 0.05
    count = settings.cycles * settings.messages  # per phase
    phones: dict[str, str] = {}  # event id of a contact detail -> its room

    async def burst(rooms: list[str], total: int) -> None:
        """``total`` messages, the rooms' at once (each room's one after another): Synapse
        batches them into transactions and the replicas have a backlog to share."""
        await asyncio.gather(
            *(
                send_messages(stack.buyer, ledger, [room_id], total // len(rooms), rng)
                for room_id in rooms
            )
        )

    async def contact_details(rooms: list[str]) -> None:
        for room_id in rooms:
            response = await send(stack.buyer, room_id, PHONE)
            assert isinstance(response, RoomSendResponse), response
            phones[response.event_id] = room_id

    # Phase 1: both replicas.
    rooms = [await open_room(stack, ledger) for _ in range(ROOMS)]
    await burst(rooms, count // 2)
    await contact_details(rooms)
    await burst(rooms, count // 2)
    await ledger.all_delivered(within=60)
    phase_one = ledger.check_deliveries()
    assert phase_one["duplicates"] == 0, "a webhook delivered twice with both replicas up"
    assert hooks.concurrent_duplicates == []
    for replica in scale_out.replicas:
        port = replica.config.server.port
        for kind in ("api", "homeserver"):
            assert proxy.served_by(port, kind) > 0, f"replica {port} answered no {kind} call"
    served = {
        replica.config.server.port: {
            kind: proxy.served_by(replica.config.server.port, kind)
            for kind in ("api", "homeserver")
        }
        for replica in scale_out.replicas
    }

    # Phase 2: one replica SIGKILLed mid-stream; the stream and the API calls go on.
    before = len(ledger.sent)
    # Slower answers: the replica killed is likely to die holding leases on rooms with
    # messages waiting, which the survivor takes over once they run out.
    hooks.delay = 0.2
    stream = asyncio.create_task(burst(rooms, count // 2))

    async def first_delivered() -> bool:
        delivered = ledger.first_deliveries()
        return any(s.event_id in delivered for s in ledger.sent[before:])

    await eventually(first_delivered, within=30)
    killed = rng.choice(scale_out.replicas)
    killed.kill()
    ledger.cycles = 1
    ledger.restored.append(time.time())  # from here the survivor must catch up
    await stream
    await contact_details(rooms)
    rooms.append(await open_room(stack, ledger))
    await burst(rooms, count // 2)
    # A row the killed replica had leased waits for its lease to run out (seconds for a webhook
    # or a bot action, 60 s for a follow-up), then the survivor takes it over.
    await ledger.all_delivered(within=120)
    await ledger.check_rooms(stack.buyer)
    survivor = next(r for r in scale_out.replicas if r is not killed)
    assert survivor.process is not None and survivor.process.poll() is None, survivor.log()

    # Every contact detail redacted and warned about once, whichever replica acted.
    async def acted_on() -> bool:
        status, page = await stack.api.call("GET", "/audit", params={"limit": "1000"})
        assert status == 200, page
        redactions = [e["subject"] for e in page["entries"] if e["action"] == "message.redacted"]
        assert sorted(redactions) == sorted(phones), "a contact detail redacted not once"
        return True

    await eventually(acted_on, within=90, interval=0.5)
    for room_id in rooms:
        expected = sum(1 for r in phones.values() if r == room_id)

        async def warned(room_id: str = room_id, expected: int = expected) -> bool:
            events = await bot_events(stack.buyer, room_id, stack.config.bot_mxid)
            warnings = [
                e
                for e in events
                if e["sender"] == stack.config.bot_mxid and WARNING in e["content"].get("body", "")
            ]
            redactions = [
                e["redacts"] if "redacts" in e else e["content"].get("redacts")
                for e in events
                if e["type"] == "m.room.redaction" and e["sender"] == stack.config.bot_mxid
            ]
            assert len(warnings) == expected, f"{room_id}: {len(warnings)} warnings"
            assert sorted(redactions) == sorted(e for e, r in phones.items() if r == room_id)
            return True

        await eventually(warned, within=30, interval=0.2)
    violations: dict[str, set[str]] = {}
    for body in hooks.delivered("policy.violation"):
        violations.setdefault(body["data"]["event_id"], set()).add(body["id"])
    assert set(violations) == set(phones)
    assert all(len(ids) == 1 for ids in violations.values()), "a violation notified twice"
    ledger.report(
        pytestconfig,
        started,
        replicas=f"2 (port {killed.config.server.port} SIGKILLed), phase 1 served {served}",
        proxy=f"{proxy.failed} attempts failed over",
        bot=f"{len(phones)} contact details redacted and warned once",
    )

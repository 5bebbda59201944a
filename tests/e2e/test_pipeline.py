"""End to end: a real Synapse delivers a real user's message and receipt into our database."""

from __future__ import annotations

from aiohttp import ClientSession
from nio import AsyncClient, JoinResponse, RoomReadMarkersResponse, RoomSendResponse

from bridge.app import Bridge
from tests.conftest import UserFactory
from tests.harness import Homeserver, eventually, running_bridge


async def send_text(client: AsyncClient, room_id: str, body: str) -> str:
    response = await client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": body}
    )
    assert isinstance(response, RoomSendResponse), response
    return response.event_id


async def joined_room(bridge: Bridge, user: AsyncClient) -> str:
    room_id = await bridge.bot.create_room(room_version="12")
    await bridge.bot.invite(room_id, user.user_id)
    response = await user.join(room_id)
    assert isinstance(response, JoinResponse), response
    return room_id


async def stored(bridge: Bridge, room_id: str, event_id: str):
    return await eventually(lambda: bridge.inbox.get_event(room_id, event_id))


async def test_a_message_reaches_the_database_and_survives_a_restart(
    homeserver: Homeserver, database_url: str, make_user: UserFactory
) -> None:
    buyer = await make_user("buyer")
    config = homeserver.bridge_config(database_url)
    async with running_bridge(config) as bridge:
        room_id = await joined_room(bridge, buyer)
        # Synapse 1.163 makes version-12 rooms, whose ids carry no server name.
        assert ":" not in room_id
        event_id = await send_text(buyer, room_id, "hello from the buyer")
        event = await stored(bridge, room_id, event_id)
        assert (event.sender, event.event_type) == (buyer.user_id, "m.room.message")
        assert event.status in ("pending", "done")  # the inbox worker may have run
        assert "hello from the buyer" in event.event_json

        read = await buyer.room_read_markers(room_id, event_id, read_event=event_id)
        assert isinstance(read, RoomReadMarkersResponse), read
        position = await eventually(lambda: bridge.inbox.read_position(room_id, buyer.user_id))
        assert position.event_id == event_id

    # While the bridge is down, Synapse keeps what it could not deliver.
    while_down = await send_text(buyer, room_id, "sent while the bridge was down")
    async with running_bridge(config) as bridge:
        assert (await bridge.inbox.get_event(room_id, event_id)).seq == event.seq
        late = await stored(bridge, room_id, while_down)
        assert late.seq > event.seq


async def test_an_event_refused_while_storage_fails_is_stored_once_it_works_again(
    homeserver: Homeserver, database_url: str, make_user: UserFactory
) -> None:
    seller = await make_user("seller")
    async with running_bridge(homeserver.bridge_config(database_url)) as bridge:
        room_id = await joined_room(bridge, seller)
        before = await send_text(seller, room_id, "before the failure")
        await stored(bridge, room_id, before)

        await bridge.db.execute("ALTER TABLE inbox_events RENAME TO inbox_events_away")
        failed = await failed_transactions(bridge)
        during = await send_text(seller, room_id, "while storage fails")
        await eventually(lambda: more_failures(bridge, failed))
        await bridge.db.execute("ALTER TABLE inbox_events_away RENAME TO inbox_events")

        # The bridge stores the refused transaction itself and tells Synapse to go on
        # (bridge/recovery.py): no wait for Synapse's backoff.
        event = await stored(bridge, room_id, during)
        assert event.sender == seller.user_id


async def failed_transactions(bridge: Bridge) -> float:
    value = bridge.metrics.registry.get_sample_value(
        "bridge_homeserver_transactions_total", {"result": "failed"}
    )
    return value or 0.0


async def more_failures(bridge: Bridge, than: float) -> bool:
    return await failed_transactions(bridge) > than


async def test_the_bridge_is_ready_with_a_homeserver(
    homeserver: Homeserver, database_url: str
) -> None:
    async with running_bridge(homeserver.bridge_config(database_url)) as bridge:
        url = f"http://127.0.0.1:{bridge.config.server.port}/ready"
        async with ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            assert await response.json() == {
                "status": "ready",
                "checks": {"database": "ok", "homeserver": "ok"},
            }
        # The bot was registered on connecting: the homeserver knows it.
        assert await bridge.bot.user_exists(bridge.config.bot_mxid)
